"""The record modalities, in a module with no dependencies: the DAG files wire one embedding
task per modality at parse time."""

from __future__ import annotations

from enum import StrEnum


class Modality(StrEnum):
    """A kind of record the embed stage encodes, by the name specs and the DAG's tasks use; with
    its canonical frame (``pipeline.frames.CONTRACTS``) and the ``modality`` value of its rows in the
    warehouse's record index."""

    NOTES = "notes"
    ECG = "ecg"
    IMAGES = "images"

    @property
    def table(self) -> str:
        return {"notes": "notes", "ecg": "ecgs", "images": "images"}[self.value]

    @property
    def stored(self) -> str:
        return {"notes": "note", "ecg": "ecg", "images": "image"}[self.value]

    @classmethod
    def of_table(cls, table: str) -> Modality:
        return next(m for m in cls if m.table == table)
