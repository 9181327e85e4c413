"""Names one step makes for the next (model -> config -> endpoint): ``STATE_DIR/<endpoint>.state``,
``KEY=value`` lines, the last one of a key wins; a dry run keeps them in memory only."""

from __future__ import annotations

from pathlib import Path


class State:
    def __init__(self, path: Path, dry_run: bool) -> None:
        self.path = path
        self.dry_run = dry_run
        self._dry: dict[str, str] = {}

    def get(self, key: str) -> str:
        if self.dry_run and key in self._dry:
            return self._dry[key]
        if not self.path.is_file():
            return ""
        value = ""
        for line in self.path.read_text().splitlines():
            name, sep, rest = line.partition("=")
            if sep and name == key:
                value = rest
        return value

    def set(self, key: str, value: str) -> None:
        if self.dry_run:
            self._dry[key] = value
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a") as state:
            state.write(f"{key}={value}\n")

    def forget(self) -> None:
        if not self.dry_run:
            self.path.unlink(missing_ok=True)
