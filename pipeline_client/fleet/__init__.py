"""``track-cameras``: one client process runs every camera of a site from one YAML config (issue 19).

config (the YAML file, validated before anything starts), counting (line crossings and zones, pure),
live (newest-frame-wins reading of live sources, reconnecting), runner (one thread per camera, outputs),
cli (the console script ``pipeline-track-cameras``).
"""
