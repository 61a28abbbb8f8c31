"""The seed's workflow: projects, outlines, chapter scripts and image prompts, built on the
batch facade (`api.py`) and kept beside the call log (`store/projects.py`). Its public names
are exported by `scriptgen_nb` itself."""
