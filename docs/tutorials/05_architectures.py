# %% [markdown]
# # 05_architectures
#
# (placeholder: being written)
