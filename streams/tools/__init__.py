"""Tools that run beside the worker: the demo, the benchmark and its Faust floor, the evaluation
runner, the embedded broker (Tansu) with its work-arounds, and local process helpers.

The command line and the tests import them; the worker (``streams.worker``) never does.
"""
