"""``coursestream``: the command line. Every command reads ``COURSESTREAM_*`` settings."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer

if TYPE_CHECKING:
    from streams.settings import Settings

cli = typer.Typer(no_args_is_help=True, add_completion=False, help=__doc__)
bench = typer.Typer(no_args_is_help=True, help="Benchmarks; each prints its figures as JSON.")
cli.add_typer(bench, name="bench")
experiment = typer.Typer(no_args_is_help=True, help="A/B experiments between ranking policies.")
cli.add_typer(experiment, name="experiment")


def logging_config(log_format: str, loglevel: str) -> dict | None:
    """JSON lines on stderr for log collectors, when asked for; None keeps the server's default."""
    if log_format != "json":
        return None
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": "pythonjsonlogger.json.JsonFormatter",
                                "fmt": "%(asctime)s %(levelname)s %(name)s %(process)d %(message)s"}},
        "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "json"}},
        "root": {"handlers": ["stderr"], "level": loglevel.upper()},
    }


def prepare_broker(settings: Settings) -> None:
    """Start-up set-up that the settings ask for: on the embedded broker, its work-arounds
    (before Faust creates its consumers; a real cluster needs none)."""
    if settings.kafka_embedded:
        from streams.tools.embedded_broker import apply_tansu_workarounds

        apply_tansu_workarounds(settings.kafka_embedded_fetch_wait_ms)


@cli.command()
def worker(loglevel: str = "info") -> None:
    """Run a stream worker (Faust) against the configured Kafka cluster."""
    import faust

    from streams.settings import Settings
    from streams.topics import ensure_topics

    prepare_broker(Settings())
    from streams.worker import app, settings

    ensure_topics(settings)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    stream_worker = faust.Worker(app, loglevel=loglevel, logging_config=logging_config(settings.log_format, loglevel))
    if not sys.stdout.isatty():
        stream_worker.spinner = None  # a progress spinner only garbles logs written to files and pipes
    stream_worker.execute_from_commandline()


@cli.command()
def broker(port: int = 9092) -> None:
    """Run the embedded Kafka-protocol broker (Tansu, memory only) until Ctrl-C."""
    from streams.tools.embedded_broker import EmbeddedBroker

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with EmbeddedBroker(port) as embedded:
        typer.echo(
            f"export COURSESTREAM_KAFKA_BOOTSTRAP_SERVERS={embedded.bootstrap_servers} COURSESTREAM_KAFKA_EMBEDDED=1"
        )
        try:
            stop.wait()
        except KeyboardInterrupt:
            pass


@cli.command()
def encoder() -> None:
    """Run the encoder service (HTTP) with the configured models."""
    from encoders.service import main
    from streams.settings import Settings

    settings = Settings()
    main(settings.encoder, log_config=logging_config(settings.log_format, "info"))


@cli.command()
def replay(
    source: Annotated[Path, typer.Argument(help="A log file or folder: JSON Lines, CSV, Parquet, OULAD, EdNet KT1/KT4.")],
    format: Annotated[Optional[str], typer.Option(help="The log's format (default: from the name).")] = None,
    courses: Annotated[Optional[Path], typer.Option(help="A JSON Lines file of course content to send first.")] = None,
    rate: Annotated[Optional[float], typer.Option(help="Events per second.")] = None,
    speed: Annotated[Optional[float], typer.Option(help="Times real time (event-time gaps / speed).")] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Read and validate the whole log, send nothing, print a report.")
    ] = False,
    json_report: Annotated[bool, typer.Option("--json", help="With --dry-run: print the report as JSON.")] = False,
    checkpoint: Annotated[
        Optional[Path],
        typer.Option(help="The checkpoint file (default: one per source and topic in COURSESTREAM_DATA_DIR/replay)."),
    ] = None,
    from_start: Annotated[
        bool, typer.Option("--from-start", help="Ignore the checkpoint: send the whole log again.")
    ] = False,
) -> None:
    """Produce a historical log of learner events into the input topics, in event-time order.

    Resumable: run the same command again after an interruption and it continues after the last
    event the broker acknowledged (Ctrl-C and SIGTERM save that first; exit code 128 + signal).
    """
    from online.events import parse_course_content
    from online.sources import READERS, detect_format, open_log
    from streams.replay import publish_courses, replay_log, validate
    from streams.settings import Settings
    from streams.topics import ensure_topics

    try:
        chosen = format or detect_format(source)
    except ValueError as error:
        raise typer.BadParameter(str(error), param_hint="SOURCE") from None
    if chosen not in READERS:
        raise typer.BadParameter(f"unknown format {chosen!r}; give one of {', '.join(READERS)}",
                                 param_hint="--format")
    if json_report and not dry_run:
        raise typer.BadParameter("--json goes with --dry-run", param_hint="--json")
    if dry_run:
        report = validate(open_log(source, chosen), str(source), chosen, progress=not json_report)
        typer.echo(report.to_json() if json_report else report.text())
        return
    settings = Settings()
    ensure_topics(settings)
    if courses:
        with courses.open("rb") as lines:
            sent = asyncio.run(publish_courses(settings, (parse_course_content(line) for line in lines if line.strip())))
        typer.echo(f"sent {sent} courses")
    raise typer.Exit(asyncio.run(replay_log(settings, source, chosen, rate=rate, speed=speed,
                                            checkpoint_path=checkpoint, from_start=from_start)))


@cli.command()
def evaluate(
    source: Annotated[Path, typer.Argument(help="An OULAD folder, an EdNet KT1/KT4 folder, or a JSON Lines, CSV or Parquet log.")],
    format: Annotated[Optional[str], typer.Option(help="The log's format (default: from the name).")] = None,
    presentation: Annotated[
        Optional[list[str]], typer.Option(help="OULAD: a module presentation, e.g. AAA-2013J (repeatable).")
    ] = None,
    last_day: Annotated[Optional[int], typer.Option(help="OULAD: keep presentation days up to this one.")] = None,
    max_learners: Annotated[Optional[int], typer.Option(help="OULAD, EdNet: read this many learners.")] = None,
    courses: Annotated[
        Optional[Path], typer.Option(help="JSON Lines of course content, for the project's policy's vectors.")
    ] = None,
    policies: Annotated[
        Optional[str],
        typer.Option(help="Comma-separated: coursestream and coursestream-diverse (the project's variants) and"
                          " baselines by name (default: all)."),
    ] = None,
    k: Annotated[int, typer.Option("--k", help="Length of each list (the K of the metrics).")] = 10,
    seed: Annotated[int, typer.Option(help="Seed of the policies that draw random numbers.")] = 0,
    window: Annotated[int, typer.Option(help="Steps per window of the plotted series.")] = 1000,
    json_path: Annotated[Optional[Path], typer.Option("--json", help="Write the report here (JSON).")] = None,
    plot: Annotated[Optional[Path], typer.Option(help="Write the metrics over time here (PNG).")] = None,
    through_kafka: Annotated[
        bool,
        typer.Option("--through-kafka", help="Run the project's policy in a worker process through the embedded broker."),
    ] = False,
    audit: Annotated[
        bool, typer.Option("--audit", help="Replay every policy with each moment's data withheld (twice the time).")
    ] = False,
    cache: Annotated[
        Optional[Path], typer.Option(help="Folder of embedded catalogues (default: COURSESTREAM_DATA_DIR/evaluation).")
    ] = None,
    vectors: Annotated[
        str, typer.Option(help="What the project's policy ranks with: text, image or video alone, fused (all at the"
                               " prior weights) or learned (all, the fusion learned from take-ups: the worker's).")
    ] = "learned",
) -> None:
    """Prequential (test-then-train) evaluation of the project's policy and the baselines over a log.

    At each step, every policy recommends K of the learner's candidates, is scored against what the
    learner did next (Recall@K, precision@K, F1@K, hit rate, NDCG@K, MRR, coverage, prerequisite
    violations; overall and for new learners against the rest), then learns. On quiz logs it also
    scores the knowledge model's next-answer predictions (AUC, RMSE, log-loss) against baselines and BKT.
    """
    from online.sources import READERS, detect_format
    from streams.tools.evaluation import POLICY_NAMES, evaluate_log, vectors_refused

    try:
        chosen = format or detect_format(source)
    except ValueError as error:
        raise typer.BadParameter(str(error), param_hint="SOURCE") from None
    if chosen not in READERS:
        raise typer.BadParameter(f"unknown format {chosen!r}; give one of {', '.join(READERS)}", param_hint="--format")
    names = [name.strip() for name in policies.split(",") if name.strip()] if policies else list(POLICY_NAMES)
    unknown = [name for name in names if name not in POLICY_NAMES]
    if unknown or not names:
        raise typer.BadParameter(f"unknown policies {unknown}; choose from {', '.join(POLICY_NAMES)}",
                                 param_hint="--policies")
    refused = vectors_refused(vectors, through_kafka)
    if refused:
        raise typer.BadParameter(refused, param_hint="--vectors")
    pairs = [tuple(p.split("-", 1)) for p in presentation or ["AAA-2013J"]]
    if any(len(pair) != 2 for pair in pairs):
        raise typer.BadParameter("give presentations as MODULE-PRESENTATION, e.g. AAA-2013J", param_hint="--presentation")
    report = evaluate_log(
        source, chosen, names, k=k, window=window, seed=seed, presentations=pairs, last_day=last_day,
        max_learners=max_learners, courses=courses, audit=audit, through_kafka=through_kafka, cache=cache,
        vectors=vectors,
    )
    typer.echo(report.table(timings=not through_kafka))
    if json_path:
        json_path.write_text(report.to_json())
        typer.echo(f"report: {json_path}")
    if plot:
        report.plot(plot)
        typer.echo(f"plot: {plot}")


@experiment.command("report")
def experiment_report(
    events: Annotated[Optional[Path], typer.Option(help="JSON Lines of learner-topic messages (default: the topic).")] = None,
    recommendations: Annotated[
        Optional[Path], typer.Option(help="JSON Lines of recommendations (default: the topic).")
    ] = None,
    control: Annotated[Optional[str], typer.Option(help="The policy the others are compared with (default: the first of COURSESTREAM_POLICIES).")] = None,
    effect: Annotated[float, typer.Option(help="Absolute take-up rate difference to size the experiment for.")] = 0.01,
    power: Annotated[float, typer.Option(help="Power to detect that difference.")] = 0.8,
    alpha: Annotated[float, typer.Option(help="Significance level (intervals at 1 - alpha).")] = 0.05,
    resamples: Annotated[int, typer.Option(help="Resamples of the bootstrap and the permutation test.")] = 9999,
    seed: Annotated[int, typer.Option(help="Seed of the resampling.")] = 0,
    json_path: Annotated[Optional[Path], typer.Option("--json", help="Write the report here (JSON).")] = None,
) -> None:
    """Per ranking policy: lists, take-ups owed to them and the take-up rate with its interval; each
    policy's difference from the control with a permutation test over learners; the lists needed
    to detect --effect. Reads the learner-events and recommendations topics, or files of them."""
    from online.evaluation.experiment import compare
    from streams.experiment import default_control, experiment_tallies
    from streams.settings import Settings

    settings = Settings()
    try:
        tallies = experiment_tallies(settings, events, recommendations)
        report = compare(tallies, control or default_control(settings, tallies), alpha=alpha, power=power,
                         effect=effect, resamples=resamples, seed=seed)
    except ValueError as error:
        raise typer.BadParameter(str(error)) from None
    typer.echo(report.table())
    if json_path:
        json_path.write_text(json.dumps(report.to_dict(), indent=2))
        typer.echo(f"report: {json_path}")


@cli.command()
def subscribe(
    group: Annotated[str, typer.Option(help="Consumer group id.")] = "coursestream-subscriber",
    idle_timeout: Annotated[Optional[float], typer.Option(help="Stop after this many idle seconds.")] = None,
) -> None:
    """Print recommendations from the output topic: validated, duplicates dropped (an example subscriber)."""
    from streams.settings import Settings
    from streams.subscriber import recommendations

    def report(raw: bytes, reason: str) -> None:
        typer.echo(f"invalid message skipped: {reason}", err=True)

    for recommendation in recommendations(Settings(), group, on_invalid=report, idle_timeout_s=idle_timeout):
        typer.echo(json.dumps(recommendation))


@cli.command()
def path(
    user: str,
    goal: str,
    worker_url: Annotated[str, typer.Option(envvar="COURSESTREAM_WORKER_URL", help="Any worker's HTTP API.")] = "http://127.0.0.1:6066",
) -> None:
    """Print the ordered learning path from what USER has taken to GOAL, over the prerequisite graph.

    Sends the operator token (COURSESTREAM_WEB_TOKEN) when one is set."""
    from urllib.parse import quote

    import httpx

    from streams.settings import Settings

    token = Settings().web_token
    headers = {"Authorization": f"Bearer {token.get_secret_value()}"} if token else {}
    answer = httpx.get(f"{worker_url}/paths/{quote(user, safe='')}/{quote(goal, safe='')}", headers=headers, timeout=30)
    if answer.status_code != 200:
        typer.echo(f"{answer.status_code}: {answer.text}", err=True)
        raise typer.Exit(1)
    steps = answer.json()["path"]
    if not steps:
        typer.echo(f"{user} has already taken {goal}")
    for number, step in enumerate(steps, start=1):
        typer.echo(f"{number:>3}. {step['title']} ({step['course_id']})")


@cli.command()
def forget(
    user: str,
    request_id: Annotated[Optional[str], typer.Option(help="Names the request in the workers' audit log (default: a new UUID).")] = None,
) -> None:
    """Ask the workers to delete what they keep about USER (a privacy request); prints the request id.

    The request goes through Kafka keyed by USER, so the learner's worker handles it after the
    learner's earlier events. What it does not remove: see the README, "Forgetting a learner".
    """
    import uuid
    from datetime import datetime, timezone

    from kafka import KafkaProducer

    from online.events import ForgetRequest
    from streams.settings import Settings
    from streams.topics import ensure_topics

    settings = Settings()
    ensure_topics(settings)
    request = ForgetRequest(request_id=request_id or str(uuid.uuid4()), user_id=user, requested_at=datetime.now(timezone.utc))
    producer = KafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers, acks="all",
                             **settings.kafka_client_options())
    try:
        producer.send(settings.topic_learner_events, key=user.encode(), value=request.model_dump_json().encode()).get(timeout=30)
    finally:
        producer.close()
    typer.echo(request.request_id)


@cli.command()
def schemas(out: Path = Path("schemas")) -> None:
    """Write the JSON Schema files of the event contract."""
    from online.schemas import write_schemas

    for path in write_schemas(out):
        typer.echo(path)


@cli.command()
def demo(
    events: Annotated[int, typer.Option(help="Learner events to replay (0: the whole sample).")] = 600,
    rate: Annotated[float, typer.Option(help="Events per second (0: as fast as possible).")] = 20.0,
    follow: Annotated[int, typer.Option(help="Learners whose story is printed.")] = 3,
    json_lines: Annotated[bool, typer.Option("--json", help="Print every published list as a JSON line instead.")] = False,
    serve: Annotated[bool, typer.Option("--serve", help="Keep everything running afterwards for the live page.")] = False,
) -> None:
    """Run everything on this machine (broker, Qdrant, encoder, worker) and replay real learner events:
    what a few learners did and the lists they got, then a summary."""
    from streams.tools.demo import run_demo

    raise typer.Exit(run_demo(events=events or None, rate=rate or None, follow=follow, as_json=json_lines, serve=serve))


@bench.command("encoder")
def bench_encoder(
    texts: int = 256, images: int = 64, concurrency: int = 32
) -> None:
    """Encoder throughput with dynamic batching vs one request at a time, and latency."""
    from encoders.bench import run_encoder_benchmark
    from streams.settings import Settings

    figures = run_encoder_benchmark(Settings().encoder, n_texts=texts, n_images=images, concurrency=concurrency)
    typer.echo(json.dumps(figures, indent=2))


def _sizes(text: str) -> list[int]:
    return [int(part) for part in text.split(",") if part.strip()]


@bench.command("pipeline")
def bench_pipeline(
    events: Annotated[int, typer.Option(help="Learner events sent as fast as possible (ceiling and saturation).")] = 20_000,
    catalogues: Annotated[str, typer.Option(help="Catalogue sizes, comma-separated; the first is the main worker's.")] = "1000,10000,100000",
    learners: Annotated[str, typer.Option(help="Learner counts to grow the main worker to, comma-separated.")] = "10000,100000",
    loads: Annotated[str, typer.Option(help="Offered loads (events/s) for latency, comma-separated.")] = "200,1000",
    load_seconds: Annotated[float, typer.Option(help="Seconds each offered load lasts.")] = 10.0,
    scale_load: Annotated[float, typer.Option(help="Offered load (events/s) of the cost-growth runs.")] = 200.0,
    coalesce_bursts: Annotated[bool, typer.Option(
        help="Run the workers with COURSESTREAM_COALESCE_BURSTS: one list per learner per batch segment.")] = False,
    data: Annotated[Optional[Path], typer.Option(help="The shared data folder (OULAD, EdNet).")] = None,
) -> None:
    """Worker throughput against a bare Kafka pass-through, latency, and cost growth (JSON, then a table on stderr)."""
    from streams.tools.bench import SHARED_DATA, run_pipeline_benchmark, table

    figures = run_pipeline_benchmark(
        events=events, catalogue_sizes=_sizes(catalogues), learner_counts=_sizes(learners),
        loads=[float(rate) for rate in loads.split(",")], load_seconds=load_seconds, scale_load=scale_load,
        coalesce_bursts=coalesce_bursts, data=data or SHARED_DATA,
    )
    typer.echo(json.dumps(figures, indent=2))
    typer.echo(table(figures), err=True)


def main() -> None:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    cli()
