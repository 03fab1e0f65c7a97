"""A zoo net built on another input volume than it was designed for: the nets whose fully
connected layers fix the size are refused when built, in one line; the others adapt."""

import pytest

from cnnkit.errors import CnnkitError
from cnnkit.models import build_model, zoo


@pytest.mark.parametrize("name, shape", [("three-layer-convnet", (1, 28, 28)),
                                         ("lenet5", (1, 28, 36)),
                                         ("three-layer-convnet", (3, 32, 30))])
def test_a_fixed_size_net_on_another_volume_is_refused_naming_its_own(name, shape):
    with pytest.raises(CnnkitError) as err:
        build_model(name, shape)
    text = str(err.value)
    assert "\n" not in text
    designed = "x".join(map(str, zoo.MODELS[name][1][1:]))
    assert f"does not take {'x'.join(map(str, shape))} input" in text
    assert f"designed for {designed} images" in text


@pytest.mark.parametrize("name, shape", [("three-layer-convnet", (1, 32, 32)),
                                         ("resnet20", (3, 40, 24)), ("lenet-bn", (1, 28, 28))])
def test_a_net_that_takes_the_volume_is_built_on_it(name, shape):
    model, built = build_model(name, shape)
    assert built == shape
    assert model.output_shape(shape) == (10,)

