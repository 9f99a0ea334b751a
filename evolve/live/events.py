"""TensorBoard event files of a campaign: scalars and rule texts per generation, and reading them.

Written with the ``tensorboard`` package's own event writer and protocol buffers (neither
TensorFlow nor torch is needed). Event files are append-only records, the one binary format in
a run directory. A resumed run re-runs the generations after its checkpoint, so each writer
session starts with a ``SessionLog.START`` event at its first generation: TensorBoard then
drops the older session's events from that step on (its "orphaned data" purge), and the
curves show each generation once.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from pathlib import Path


class EventWriter:
    """Scalars and text summaries into a new event file in ``folder``."""

    def __init__(self, folder: str | Path, purge_from: int | None = None, flush_secs: int = 5):
        from tensorboard.compat.proto.event_pb2 import Event, SessionLog
        from tensorboard.summary.writer.event_file_writer import EventFileWriter

        Path(folder).mkdir(parents=True, exist_ok=True)
        self._writer = EventFileWriter(str(folder), max_queue_size=50, flush_secs=flush_secs)
        if purge_from is not None:
            self._writer.add_event(Event(wall_time=time.time(), step=int(purge_from),
                                         session_log=SessionLog(status=SessionLog.START)))

    def scalars(self, step: int, values: Mapping[str, float | None]) -> None:
        """One scalar per tag at ``step``; None and non-finite values are left out."""
        from tensorboard.compat.proto.event_pb2 import Event
        from tensorboard.compat.proto.summary_pb2 import Summary

        entries = [Summary.Value(tag=tag, simple_value=float(value))
                   for tag, value in values.items()
                   if value is not None and math.isfinite(float(value))]
        if entries:
            self._writer.add_event(Event(wall_time=time.time(), step=int(step),
                                         summary=Summary(value=entries)))

    def text(self, step: int, tag: str, text: str) -> None:
        """A text summary (TensorBoard's Text tab) at ``step``."""
        from tensorboard.compat.proto.event_pb2 import Event
        from tensorboard.compat.proto.summary_pb2 import Summary
        from tensorboard.compat.proto.tensor_pb2 import TensorProto
        from tensorboard.compat.proto.tensor_shape_pb2 import TensorShapeProto
        from tensorboard.compat.proto.types_pb2 import DT_STRING
        from tensorboard.plugins.text.metadata import create_summary_metadata

        tensor = TensorProto(dtype=DT_STRING, string_val=[text.encode("utf-8")],
                             tensor_shape=TensorShapeProto(dim=[TensorShapeProto.Dim(size=1)]))
        value = Summary.Value(tag=tag, tensor=tensor,
                              metadata=create_summary_metadata(display_name=tag,
                                                               description=""))
        self._writer.add_event(Event(wall_time=time.time(), step=int(step),
                                     summary=Summary(value=[value])))

    def flush(self) -> None:
        self._writer.flush()

    def close(self) -> None:
        self._writer.close()


def _accumulator(folder: str | Path):
    import logging

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    # the purge of a resumed run's replaced events is expected here, not worth a warning
    logger = logging.getLogger("tensorboard")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        acc = EventAccumulator(str(folder), size_guidance={"scalars": 0, "tensors": 0})
        acc.Reload()
    finally:
        logger.setLevel(level)
    return acc


def read_scalars(folder: str | Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar tag of the event files in ``folder``: [(step, value)] in step order, as
    TensorBoard shows them (events a later session replaced are dropped)."""
    acc = _accumulator(folder)
    return {tag: sorted((e.step, e.value) for e in acc.Scalars(tag))
            for tag in acc.Tags()["scalars"]}


def read_texts(folder: str | Path) -> dict[str, list[tuple[int, str]]]:
    """Every text tag of the event files in ``folder``: [(step, text)] in step order."""
    acc = _accumulator(folder)
    out = {}
    for tag in acc.Tags()["tensors"]:
        out[tag] = sorted((e.step, e.tensor_proto.string_val[0].decode("utf-8"))
                          for e in acc.Tensors(tag) if e.tensor_proto.string_val)
    return out


__all__ = ["EventWriter", "read_scalars", "read_texts"]
