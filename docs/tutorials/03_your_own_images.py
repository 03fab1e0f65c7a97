# %% [markdown]
# # 03_your_own_images
#
# (placeholder: being written)
