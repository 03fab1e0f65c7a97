# %% [markdown]
# # 07_cores_and_machines
#
# (placeholder: being written)
