"""The encoder service: course text, images and video to vectors, with dynamic batching.

Stands alone (no import of ``streams``, ``online`` or Faust) so that it can run, and scale,
on its own GPU machines. Start with ``encoders.service`` (the HTTP API) and
``encoders.embedder`` (what a course's vectors are).
"""
