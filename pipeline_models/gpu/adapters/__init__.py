"""``model.py`` files of the ``gpu`` profile (linked by ``render_configs`` through the profile's ``adapters``)."""
