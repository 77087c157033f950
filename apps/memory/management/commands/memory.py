"""`python manage.py memory …`: long-term memory for the operator's scripts.

    memory ingest <path>... --tenant <slug> [--namespace NS] [--metadata JSON] [--retries N]
    memory resume [--tenant <slug>]

`ingest` reads files (directories recursively), refuses with a reason what memory does not
take (binary, too large, unsupported type: "skipped <file>: <code>: <why>" on stderr), stores
the rest chunked, then embeds with a progress bar over the chunks. Interrupted (Ctrl-C, a
crash), it loses nothing: run it again and it skips what is done (same text, same hash) and
embeds only the chunks still without a vector. The embedder down: it waits and tries again
(--retries times, backing off 2 s doubling to 60 s); still down, the documents stay `waiting`
and it exits 3 ("paused"), to be run again — or the worker's retries, or `memory resume`,
finish them. Exit 0 when everything is embedded, 1 on bad arguments, 2 if a file was
skipped.
"""

from __future__ import annotations

import json
import sys
import time
from argparse import ArgumentParser
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from apps.core.exceptions import WardenError
from apps.memory import services
from apps.memory.exceptions import DocumentRefused, DocumentTooLarge
from apps.memory.models import Chunk, Document, DocumentState
from apps.tenants.exceptions import TenantNotFound
from apps.tenants.models import Tenant
from apps.tenants.selectors import tenant_get_by_slug

EXIT_SKIPPED = 2
EXIT_PAUSED = 3
BACKOFF_FIRST_S = 2.0
BACKOFF_CAP_S = 60.0


def _files(paths: list[str]) -> Iterator[Path]:
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            yield from sorted(p for p in path.rglob("*") if p.is_file())
        elif path.is_file():
            yield path
        else:
            raise CommandError(f"{raw}: no such file or directory")


class Command(BaseCommand):
    help = "Ingest files into a tenant's long-term memory, or resume unfinished embedding."

    def add_arguments(self, parser: ArgumentParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        ingest = sub.add_parser("ingest", help="ingest files or directories")
        ingest.add_argument("paths", nargs="+")
        ingest.add_argument("--tenant", required=True, help="the tenant's slug")
        ingest.add_argument("--namespace", default="default")
        ingest.add_argument("--metadata", default="{}", help="a JSON object for every document")
        ingest.add_argument(
            "--retries", type=int, default=5, help="tries while the embedder is down"
        )
        ingest.add_argument("--backoff", type=float, default=BACKOFF_FIRST_S, help="first wait (s)")
        resume = sub.add_parser("resume", help="embed every unfinished document")
        resume.add_argument("--tenant", help="only this tenant's (slug)")
        resume.add_argument("--retries", type=int, default=5)
        resume.add_argument("--backoff", type=float, default=BACKOFF_FIRST_S)

    def handle(self, *args: Any, **options: Any) -> None:
        self.retries = max(1, int(options["retries"]))
        self.backoff = max(0.0, float(options["backoff"]))
        if options["action"] == "ingest":
            code = self.ingest(options)
        else:
            code = self.resume(options)
        if code:
            sys.exit(code)

    def _tenant(self, slug: str) -> Tenant:
        try:
            return tenant_get_by_slug(slug=slug)
        except TenantNotFound as exc:
            raise CommandError(exc.message) from None

    def ingest(self, options: dict[str, Any]) -> int:
        tenant = self._tenant(options["tenant"])
        try:
            metadata = json.loads(options["metadata"])
            namespace = services.namespace_checked(options["namespace"])
            services.metadata_checked(metadata)
        except ValueError as exc:
            raise CommandError(f"--metadata is not JSON: {exc}") from None
        except WardenError as exc:
            raise CommandError(exc.message) from None
        skipped = 0
        documents: list[Document] = []
        for path in _files(options["paths"]):
            try:
                services.type_checked(filename=path.name)
                services.size_checked(path.stat().st_size, name=str(path))
                text = services.text_decoded(path.read_bytes(), name=str(path))
                result = services.document_ingest(
                    tenant=tenant,
                    text=text,
                    title=path.name,
                    namespace=namespace,
                    metadata={**metadata, "source": str(path)},
                    embed=False,
                )
            except (DocumentRefused, DocumentTooLarge) as exc:
                skipped += 1
                self.stderr.write(f"skipped {path}: {exc.code}: {exc.message}")
                continue
            if result.document.state == DocumentState.READY:
                self.stdout.write(f"unchanged {path} (already in memory)")
            else:
                documents.append(result.document)
        paused = self.embed(documents)
        self.stdout.write(f"{len(documents) - paused} embedded, {paused} paused, {skipped} skipped")
        return EXIT_PAUSED if paused else (EXIT_SKIPPED if skipped else 0)

    def resume(self, options: dict[str, Any]) -> int:
        documents = services.documents_unfinished()
        if options.get("tenant"):
            tenant = self._tenant(options["tenant"])
            documents = [d for d in documents if d.tenant_id == tenant.id]
        paused = self.embed(documents)
        self.stdout.write(f"{len(documents) - paused} embedded, {paused} paused")
        return EXIT_PAUSED if paused else 0

    def embed(self, documents: list[Document]) -> int:
        """Embed what is left of each document, with one progress bar over their chunks;
        the number still paused at the end."""
        ids = [d.id for d in documents]
        total = Chunk.objects.filter(document_id__in=ids).count()
        done = Chunk.objects.filter(document_id__in=ids, embedding__isnull=False).count()
        bar = tqdm(total=total, initial=done, unit="chunk", file=self.stderr, disable=None)
        paused = 0
        try:
            for document in documents:
                wait = self.backoff
                for attempt in range(1, self.retries + 1):
                    document = services.document_embed(document=document, progress=bar.update)
                    if document.state != DocumentState.WAITING:
                        break
                    if attempt < self.retries:
                        self.stderr.write(
                            f"embedder unavailable; retrying in {wait:.0f} s ({document.detail})"
                        )
                        time.sleep(wait)
                        wait = min(wait * 2, BACKOFF_CAP_S)
                if document.state == DocumentState.WAITING:
                    paused += 1
                    self.stderr.write(
                        f"paused {document.title}: {document.detail}; run the command again "
                        "to resume"
                    )
        finally:
            bar.close()
        return paused
