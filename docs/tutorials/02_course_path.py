# %% [markdown]
# # 02_course_path
#
# (placeholder: being written)
