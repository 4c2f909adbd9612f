"""metrics.csv, the per-step log a training run writes into its checkpoint folder: its columns, how a row is read,
and which rows describe a save. Training appends to it and trims it on resume; a push uploads the rows up to the
saved step; the model card and the curves read it."""

import csv
from pathlib import Path

METRICS_NAME = "metrics.csv"
METRIC_FIELDS = ["step", "loss", "lr", "momentum", "target_std", "clip_std", "rankme", "clips_per_s", "mask"]
LOGGED_LATER = {"clip_std"}  # runs logged before it have no such column: read as NaN


def parse_metrics_row(row: dict) -> dict:
    """A metrics.csv row with its numbers as floats; ValueError for a row cut short or malformed (csv.DictReader
    leaves a short row's missing fields None and puts a long one's extras under None)."""
    if None in row or any(row.get(field) in (None, "") for field in METRIC_FIELDS if field not in LOGGED_LATER):
        raise ValueError(f"incomplete metrics row {row}")
    row = {**row, **{field: row.get(field) or "nan" for field in LOGGED_LATER}}
    return {k: (v if k == "mask" else float(v)) for k, v in row.items()}


def read_metrics(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return [parse_metrics_row(row) for row in csv.DictReader(f)]


def read_raw_rows(path: Path) -> list[dict]:
    """The rows as written (strings), none dropped; no file, no rows. ValueError naming the file for one that is not
    text."""
    if not path.is_file():
        return []
    try:
        with open(path, newline="") as f:
            return list(csv.DictReader(f))
    except (UnicodeDecodeError, csv.Error) as err:
        raise ValueError(f"{path}: not a metrics log ({err})") from None


def rows_logged_before(rows: list[dict], step: int) -> list[dict]:
    """The whole rows of steps before `step`: what a save at `step` took. Rows are appended without an fsync, so a
    power cut can leave the last one half written, even one logged before a save that reached the disk; kept, it
    would fail every later reading of the curves."""
    return [row for row in rows if _is_whole(row) and float(row["step"]) < step]


def write_rows(path: Path, rows: list[dict]) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, METRIC_FIELDS)
        writer.writeheader()
        writer.writerows(rows)


def append_row(path: Path, row: dict) -> None:
    with open(path, "a", newline="") as f:
        csv.DictWriter(f, METRIC_FIELDS).writerow(row)


def _is_whole(row: dict) -> bool:
    try:
        parse_metrics_row(row)
    except ValueError:
        return False
    return True
