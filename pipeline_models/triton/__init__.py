"""The Triton boundary: the only package that imports ``triton_python_backend_utils``.

``model_args`` (what ``initialize`` gets, load failures), ``inputs`` (a request's tensors, camera and
frame index), ``responses`` (results and exceptions into responses, per request) and ``custom_metrics``
(Triton's custom metrics). Every ``model.py`` is a thin adapter over these and pure ``pipeline_models``
code.
"""
