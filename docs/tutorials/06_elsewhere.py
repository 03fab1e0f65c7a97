# %% [markdown]
# # 06_elsewhere
#
# (placeholder: being written)
