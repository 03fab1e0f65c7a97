# %% [markdown]
# # 04_inside_the_net
#
# (placeholder: being written)
