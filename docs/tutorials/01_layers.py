# %% [markdown]
# # 01_layers
#
# (placeholder: being written)
