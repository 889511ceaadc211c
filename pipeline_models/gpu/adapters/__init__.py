"""``model.py`` files of the ``gpu`` profile (linked by ``pipeline_config.render`` through the profile's ``adapters``)."""
