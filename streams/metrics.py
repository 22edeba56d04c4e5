"""Prometheus metrics of a worker, served at ``GET /metrics`` by ``streams.web``."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

events = Counter("coursestream_events", "Learner events processed, by kind.", ["kind"])
dead_letters = Counter("coursestream_dead_letters", "Messages sent to the dead-letter topic.", ["error_type"])
recommendations = Counter("coursestream_recommendations", "Recommendations (lists) published, by ranking policy.",
                          ["policy"])
items_shown = Counter("coursestream_recommended_items", "Items of the lists published, by ranking policy.", ["policy"])
take_ups = Counter(
    "coursestream_take_ups",
    "Take-ups owed to a recent list (online.attribution), by its policy, the rank shown at and whether it explored.",
    ["policy", "rank", "explore"],
)
lists_taken_up = Counter("coursestream_lists_taken_up", "Lists that at least one take-up was owed to, by policy.",
                         ["policy"])
feedback = Counter("coursestream_feedback", "Learners' feedback on recommended courses, by policy and action.",
                   ["policy", "action"])
event_to_recommendation = Histogram(
    "coursestream_event_to_recommendation_seconds",
    "From the learner event's broker timestamp to its recommendation being sent.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
learner_batch_events = Histogram(
    "coursestream_learner_batch_events", "Learner messages per batch the worker took (what was ready; see streams.batches).",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024),
)
learner_write_events = Histogram(
    "coursestream_learner_write_events",
    "Learner messages per write of the table rows they changed (several batches while the worker lags).",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096, 16384),
)
#: The learner path's steps, as ``learner_step_seconds`` labels them (``streams.worker.learners``).
LEARNER_STEPS = ("parse", "learn", "candidates", "rank", "publish", "write")
learner_step_seconds = Histogram(
    "coursestream_learner_step_seconds",
    "Time spent in each step of the learner path, waiting included: parse a batch, learn an event, candidates"
    " of a segment's lists, rank them (features, order and explain), publish them, write a window's rows.",
    ["step"],
    buckets=(0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5),
)
#: Each step's timer, by name: ``with learner_steps["learn"].time(): ...``.
learner_steps = {step: learner_step_seconds.labels(step) for step in LEARNER_STEPS}
knowledge_forgotten = Counter(
    "coursestream_knowledge_forgotten",
    "Knowledge entries (skills, missed questions, courses) a learner's profile forgot to fit its 2 KB row.")
fusion_weight = Gauge(
    "coursestream_fusion_weight", "The re-ranker's weight of each modality's similarity (media: learned from take-ups), "
    "the mean over this worker's partitions.", ["modality"])
consumer_lag = Gauge("coursestream_consumer_lag", "End offset minus committed offset.", ["topic", "partition"])
vector_store_seconds = Histogram(
    "coursestream_vector_store_seconds", "Vector store call latency.", ["operation"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5),
)
encoder_calls = Counter("coursestream_encoder_calls", "Encoder service calls, by outcome.", ["outcome"])
courses_indexed = Counter("coursestream_courses_indexed", "Courses embedded and stored.")
courses_parked = Counter("coursestream_courses_parked", "Courses parked on the retry topic.")
parked_age = Gauge(
    "coursestream_parked_content_age_seconds",
    "Age of the oldest parked course this worker is retrying (since it was first parked); 0 when none.",
)
catalogue_replica_points = Counter(
    "coursestream_catalogue_replica_points",
    "Points read from the course-vectors topic into this worker's embedded store (any worker's indexing).",
)
forget_requests = Counter(
    "coursestream_forget_requests", "Privacy requests handled, by whether anything was left to delete.", ["outcome"]
)
dependency_up = Gauge(
    "coursestream_dependency_up", "1 while the dependency answered its last call, 0 while it is down.", ["dependency"]
)
dependency_failures = Counter(
    "coursestream_dependency_failures", "Calls that failed because a dependency was down or slow.", ["dependency"]
)
