"""What an operator runs against a deployment, the same against AWS and the local stack:
the consistency check, the dead letters, and sending them again after a fix.

    python -m functions.operations check [--repair] [--nights N | --night YYYY-MM-DD ... | --all-nights]
    python -m functions.operations dead-letters [--json]
    python -m functions.operations redrive (ID ... | --all) [--dry-run]

The deployment comes from the environment, as the functions' does (Settings.from_env:
RAW_BUCKET, PRODUCTS_BUCKET, INDEX_TABLE, WORK_QUEUE_URL, INGEST_QUEUE_URL,
BACKGROUND_QUEUE_URL where there is one, and AWS_ENDPOINT_URL for anything but AWS),
or with `--stack NAME` from a deployed stack's outputs. `python -m infra.local
check|dead-letters|redrive` runs this against the running local stack.

Dead letters are found in two places: the index, where the dead-letter functions keep
each message they handle (functions/deadletters.py), and the dead-letter queues
themselves, read without deleting, for messages no function has handled (the DLQ
function disabled or failing). A redrive sends the original message back to the queue
it came from (a reduction task: the work queue, even from the background queue's
dead-letter queue), takes it out of the dead-letter queue if it is still there, and reopens
its files (`retrying`, with a note that the operator redrove them) so that they end
final again once the work is done.
"""
from __future__ import annotations

import argparse
import json
import os
import posixpath
import sys
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

from functions import deadletters
from golive_data.index import DEAD_LETTER_DEAD, DEAD_LETTER_REDRIVEN, file_id_for, utcnow
from golive_data.item import FINAL_STATUSES, STATUS_FAILED, STATUS_RETRYING
from golive_data.settings import Settings
from functions.services import TASK_KEY, Services, parse_task

#: seconds a listing holds the messages it reads from a dead-letter queue (a receive is
#: the only way to read one); they are made visible again as soon as it has read them
PEEK_VISIBILITY = 30
#: seconds a redrive holds the messages it takes from a dead-letter queue
TAKE_VISIBILITY = 120
#: reduction tasks that act only on a reduced file: their failure left the file
#: unreduced, so they are redriven as a forced reduction, which ends with the same step
_NEEDS_REDUCED = ("calibrate", "lamp_reduced")


@dataclass
class DeadLetter:
    id: str
    queue: str
    body: str
    reason: str
    at: Optional[str]
    deliveries: int
    files: List[Dict[str, Any]] = field(default_factory=list)
    #: kept in the index by a dead-letter function
    recorded: bool = True
    #: still in the dead-letter queue
    in_queue: bool = False
    redrives: int = 0
    #: `dead`, or `redriven` (listed only when asked for)
    state: str = DEAD_LETTER_DEAD
    redriven_at: Optional[str] = None
    receipt: Optional[str] = field(default=None, repr=False)
    #: the dead-letter queue the receipt is of (the reduction's letters have two)
    receipt_queue: Optional[str] = field(default=None, repr=False)

    @classmethod
    def from_entry(cls, entry: Dict[str, Any]) -> "DeadLetter":
        return cls(entry["id"], entry["queue"], entry["body"], entry.get("reason") or "", entry.get("at"),
                   int(entry.get("deliveries") or 0), [dict(f) for f in entry.get("files") or []],
                   redrives=int(entry.get("redrives") or 0), state=entry.get("state") or DEAD_LETTER_DEAD,
                   redriven_at=entry.get("redriven_at"))

    def what(self) -> str:
        """The message in a few words."""
        if self.queue == deadletters.REDUCE:
            task = parse_task(self.body) or {}
            words = [task.get("task") or "not a task"]
            words += [str(task[k]) for k in ("kind", "group", "night") if task.get(k)]
            return "task " + " ".join(words)
        names = [f.get("file_name") or f["file_id"] for f in self.files]
        return "S3 event " + (", ".join(names) if names else "(no file)")

    def selected_by(self, ids: Optional[set]) -> bool:
        return ids is None or self.id in ids or any(f.get("file_id") in ids for f in self.files)

    def as_dict(self) -> Dict[str, Any]:
        out = asdict(self)
        out.pop("receipt")
        out.pop("receipt_queue")
        out["what"] = self.what()
        return out

    def lines(self) -> List[str]:
        where = "in the dead-letter queue, not yet handled" if not self.recorded else (
            "kept in the index" + (" and still in the dead-letter queue" if self.in_queue else ""))
        out = []
        for f in self.files or [{}]:
            out.append(f"  {self.queue:6s}  {f.get('night') or '-':10s}  {f.get('file_name') or self.what():32s}  "
                       f"{f.get('status') or '-':9s}  file {f.get('file_id') or '-'}")
        out.append(f"          {self.reason}")
        if self.state == DEAD_LETTER_REDRIVEN:
            history = f"; redriven {self.redrives} time(s), last at {self.redriven_at}"
        else:
            history = f"; dead again after {self.redrives} redrive(s)" if self.redrives else ""
        out.append(f"          letter {self.id}, {self.deliveries} deliveries, {self.at or 'time unknown'}, {where}"
                   + history)
        return out


@dataclass
class Listing:
    letters: List[DeadLetter]
    #: per source queue: its dead-letter queue's URL and how many messages it holds
    queues: Dict[str, Dict[str, Any]]

    def as_dict(self) -> Dict[str, Any]:
        return {"dead_letters": [d.as_dict() for d in self.letters], "queues": self.queues}

    def lines(self) -> List[str]:
        queues = "; ".join(f"{q} dead-letter queue: " + (v["error"] if "error" in v else
                                                        f"{v['waiting']} waiting, {v['in_flight']} being handled")
                           for q, v in self.queues.items())
        if not self.letters:
            return [f"no dead letters ({queues})"]
        redriven = sum(d.state == DEAD_LETTER_REDRIVEN for d in self.letters)
        out = [f"{len(self.letters)} dead letter(s){f', {redriven} of them redriven' if redriven else ''} ({queues}):"]
        for letter in self.letters:
            out += letter.lines()
        out.append("send them again after a fix: redrive FILE_ID|LETTER_ID ... (or --all)")
        return out


# ---- the queues ---------------------------------------------------------------------
def source_queue_url(settings: Settings, queue: str) -> str:
    url = {deadletters.INGEST: settings.ingest_queue_url, deadletters.REDUCE: settings.work_queue_url}[queue]
    if not url:
        raise RuntimeError(f"the {queue} queue's URL is not set "
                           f"({'INGEST_QUEUE_URL' if queue == deadletters.INGEST else 'WORK_QUEUE_URL'})")
    return url


def _read_queues(settings: Settings) -> List[Tuple[str, str, Optional[str]]]:
    """The queues whose dead-letter queues are read: (the name the listing gives it, the
    role its letters are kept and redriven under, its URL, or None for its role's). The
    background queue's dead letters are the reduction's: the reduction's dead-letter
    function handles them (and keeps them as `reduce`), and any task runs from either
    queue, so they are redriven to the work queue. Without one, there is none to read."""
    read: List[Tuple[str, str, Optional[str]]] = [(queue, queue, None) for queue in deadletters.QUEUES]
    if settings.background_queue_url:
        read.append(("background", deadletters.REDUCE, settings.background_queue_url))
    return read


def dead_letter_queue_url(sqs, queue_url: str) -> str:
    """A queue's dead-letter queue, from its redrive policy (nothing more to configure)."""
    attrs = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["RedrivePolicy"])["Attributes"]
    arn = json.loads(attrs["RedrivePolicy"])["deadLetterTargetArn"]
    _, _, _, _, account, name = arn.split(":", 5)
    return sqs.get_queue_url(QueueName=name, QueueOwnerAWSAccountId=account)["QueueUrl"]


def _queue_counts(sqs, url: str) -> Dict[str, int]:
    attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=[
        "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"])["Attributes"]
    return {"waiting": int(attrs["ApproximateNumberOfMessages"]),
            "in_flight": int(attrs["ApproximateNumberOfMessagesNotVisible"])}


def _receive_all(sqs, url: str, visibility: int, limit: int = 1000) -> List[Dict[str, Any]]:
    """The messages visible in a queue, each received once and held `visibility` s."""
    seen: Dict[str, Dict[str, Any]] = {}
    long_polled = False
    while len(seen) < limit:
        resp = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=visibility,
                                   WaitTimeSeconds=1 if long_polled else 0, AttributeNames=["All"])
        new = [m for m in resp.get("Messages", []) if m["MessageId"] not in seen]
        if not new:
            if long_polled:
                break
            long_polled = True  # a short poll may miss messages on AWS; one long poll looks everywhere
            continue
        seen.update((m["MessageId"], m) for m in new)
    return list(seen.values())


def _release(sqs, url: str, messages: Iterable[Dict[str, Any]]) -> None:
    """Make received messages visible again at once (they were only read)."""
    entries = [{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"], "VisibilityTimeout": 0}
               for i, m in enumerate(messages)]
    for start in range(0, len(entries), 10):
        sqs.change_message_visibility_batch(QueueUrl=url, Entries=entries[start:start + 10])


def _files_of(queue: str, body: str, settings: Settings) -> List[Dict[str, Any]]:
    if queue == deadletters.REDUCE:
        task = parse_task(body) or {}
        return [{"file_id": task["file_id"]}] if task.get("file_id") else []
    from functions.ingest import split_key
    from functions.s3events import BadMessage, ObjectCreated, parse_body

    try:
        events = [e for e in parse_body(body) if isinstance(e, ObjectCreated)]
    except BadMessage:
        return []
    files = []
    for e in events:
        night, path = split_key(e.key, settings.raw_prefix)
        files.append({"file_id": file_id_for(e.bucket, e.key), "night": night or "unsorted",
                      "file_name": posixpath.basename(path)})
    return files


def _from_message(services: Services, queue: str, message: Dict[str, Any]) -> DeadLetter:
    """A message found in a dead-letter queue that no function has kept."""
    body = message["Body"]
    files = _files_of(queue, body, services.settings)
    errors = [(services.index.get_file(f["file_id"]) or {}).get("error") for f in files]
    last = next((e for e in errors if e), None)
    sent = (message.get("Attributes") or {}).get("SentTimestamp")
    at = (datetime.fromtimestamp(int(sent) / 1000, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
          if sent else None)
    reason = ("in the dead-letter queue, not handled by its function"
              + (f"; last error on the file: {last}" if last else ""))
    return DeadLetter(deadletters.letter_id(queue, body), queue, body, reason, at, services.settings.max_receive_count,
                      files, recorded=False, in_queue=True, receipt=message["ReceiptHandle"])


def _with_file_status(services: Services, letters: Iterable[DeadLetter]) -> None:
    for letter in letters:
        for f in letter.files:
            item = services.index.get_file(f["file_id"]) or {}
            f["status"] = item.get("status") or "not indexed"
            for k in ("night", "file_name"):
                if item.get(k):
                    f[k] = item[k]


def _gather(services: Services, visibility: int, include_redriven: bool = False):
    """(letters by id, queue summaries, messages received per dead-letter queue URL)."""
    letters = {e["id"]: DeadLetter.from_entry(e) for e in services.index.dead_letters(include_redriven)}
    queues: Dict[str, Dict[str, Any]] = {}
    received: Dict[str, List[Dict[str, Any]]] = {}
    for name, queue, source in _read_queues(services.settings):
        try:
            url = dead_letter_queue_url(services.sqs, source or source_queue_url(services.settings, queue))
        except RuntimeError as exc:
            queues[name] = {"error": f"not looked at: {exc}"}
            continue
        queues[name] = {"url": url, **_queue_counts(services.sqs, url)}
        received[url] = _receive_all(services.sqs, url, visibility) if queues[name]["waiting"] else []
        for message in received[url]:
            lid = deadletters.letter_id(queue, message["Body"])
            if lid in letters:
                letters[lid].in_queue, letters[lid].receipt = True, message["ReceiptHandle"]
            else:
                letters[lid] = _from_message(services, queue, message)
            letters[lid].receipt_queue = url
    return letters, queues, received


# ---- listing and redriving ----------------------------------------------------------
def list_dead_letters(services: Services, include_redriven: bool = False) -> Listing:
    """Every dead letter: those the dead-letter functions kept, and those still in a
    dead-letter queue (read, not deleted), each with its files and their status now."""
    letters, queues, received = _gather(services, PEEK_VISIBILITY, include_redriven)
    for url, messages in received.items():
        if messages:
            _release(services.sqs, url, messages)
    for letter in letters.values():
        letter.receipt = None
    ordered = sorted(letters.values(), key=lambda d: (d.at or "", d.id))
    _with_file_status(services, ordered)
    return Listing(ordered, queues)


@dataclass
class Redriven:
    letter: DeadLetter
    queue_url: str
    body: str
    sent: bool

    def line(self) -> str:
        names = ", ".join(f"{f.get('file_name') or f['file_id']} (file {f['file_id']})" for f in self.letter.files)
        verb = "redriven" if self.sent else "would redrive"
        count = f" [redrive {self.letter.redrives}]" if self.sent else ""
        return f"{verb}: {self.letter.queue} {names or self.letter.what()} -> {self.queue_url}{count}"


def redrive_message(letter: DeadLetter) -> str:
    """The body to send again: the original, except a task that needs its file reduced
    (see _NEEDS_REDUCED), which becomes a forced reduction of that file."""
    task = parse_task(letter.body) if letter.queue == deadletters.REDUCE else None
    if task and task.get("task") in _NEEDS_REDUCED and task.get("file_id"):
        return json.dumps({TASK_KEY: {"task": "reduce", "file_id": task["file_id"], "force": True}})
    return letter.body


def redrive(services: Services, ids: Optional[Sequence[str]] = None, dry_run: bool = False) -> List[Redriven]:
    """Send dead letters back to their queues: those naming one of `ids` (file ids or
    letter ids), or all with None. Each file is reopened first (`retrying`, a note that
    the operator redrove it), then the message sent, then the letter marked redriven and
    taken out of its dead-letter queue; a failure part-way leaves the letter to redrive
    again (the work is idempotent)."""
    wanted = set(ids) if ids is not None else None
    letters, _, received = _gather(services, TAKE_VISIBILITY)
    chosen = sorted((d for d in letters.values() if d.selected_by(wanted)), key=lambda d: (d.at or "", d.id))
    keep = {d.receipt for d in chosen if d.receipt} if not dry_run else set()
    for url, messages in received.items():   # what is not redriven now goes back at once
        _release(services.sqs, url, [m for m in messages if m["ReceiptHandle"] not in keep])
    _with_file_status(services, chosen)
    done = []
    for letter in chosen:
        url, body = source_queue_url(services.settings, letter.queue), redrive_message(letter)
        if dry_run:
            done.append(Redriven(letter, url, body, sent=False))
            continue
        now = utcnow()
        for f in letter.files:
            _reopen(services, f["file_id"], f"redriven by operator at {now} (redrive {letter.redrives + 1})")
        services.sqs.send_message(QueueUrl=url, MessageBody=body)
        if not letter.recorded:     # kept now, so that its redrives are counted
            files = [{k: v for k, v in f.items() if k != "status"} for f in letter.files]
            services.index.record_dead_letter(deadletters.make(letter.queue, letter.body, letter.reason, files,
                                                               letter.deliveries, letter.at))
        letter.redrives = services.index.mark_redriven(letter.id)
        if letter.receipt:
            services.sqs.delete_message(QueueUrl=letter.receipt_queue, ReceiptHandle=letter.receipt)
        done.append(Redriven(letter, url, body, sent=True))
    return done


def _reopen(services: Services, file_id: str, note: str) -> None:
    """A failed (or unfinished) file waits for the redriven work; a finished one is left
    as it is (the work is idempotent) without its dead-letter note."""
    item = services.index.get_file(file_id)
    if item is None:
        return
    if item.get("status") == STATUS_FAILED or item.get("status") not in FINAL_STATUSES:
        was = f"; before: {item['error']}" if item.get("error") else ""
        services.index.update_file(file_id, {"status": STATUS_RETRYING, "error": note + was, "dead_letter": None})
    elif item.get("dead_letter"):
        services.index.update_file(file_id, {"dead_letter": None})


# ---- the command line -------------------------------------------------------------------
#: The stack's outputs (infra/sam.py) and the environment variables they stand for.
STACK_OUTPUTS = {"RawBucketName": "RAW_BUCKET", "ProductsBucketName": "PRODUCTS_BUCKET",
                 "IndexTableName": "INDEX_TABLE", "ReduceQueueUrl": "WORK_QUEUE_URL",
                 "BackgroundQueueUrl": "BACKGROUND_QUEUE_URL",
                 "IngestQueueUrl": "INGEST_QUEUE_URL", "UserPoolId": "USER_POOL_ID",
                 "UserPoolClientId": "USER_POOL_CLIENT_ID"}


def environment_from_outputs(outputs: Iterable[Dict[str, str]], environ: Mapping[str, str]) -> Dict[str, str]:
    env = dict(environ)
    env.update({STACK_OUTPUTS[o["OutputKey"]]: o["OutputValue"] for o in outputs if o["OutputKey"] in STACK_OUTPUTS})
    return env


def deployment_environment(stack_name: Optional[str], environ: Mapping[str, str]) -> Dict[str, str]:
    """The environment, with a deployed stack's outputs over it when one is named."""
    if not stack_name:
        return dict(environ)
    import boto3

    stack = boto3.client("cloudformation").describe_stacks(StackName=stack_name)["Stacks"][0]
    return environment_from_outputs(stack.get("Outputs", []), environ)


def _settings(args, environ: Mapping[str, str]) -> Settings:
    return Settings.from_env(deployment_environment(args.stack, environ))


def _print(lines: Iterable[str]) -> None:
    for line in lines:
        print(line)


def cmd_check(services: Services, args) -> int:
    from functions import consistency
    from functions.reduction import config_for

    nights = None if args.all_nights else (args.night or args.nights)
    kwargs = {} if args.abandoned_after is None else {"abandoned_after": args.abandoned_after}
    report = consistency.check(services, config_for(services), nights=nights, repair=args.repair,
                               stuck_after=args.stuck_after, **kwargs)
    if args.json:
        print(json.dumps(report.as_dict(), indent=2))
    else:
        _print(report.lines())
    return 1 if report.as_dict()["problems"] else 0


def cmd_dead_letters(services: Services, args) -> int:
    listing = list_dead_letters(services, include_redriven=args.all)
    if args.json:
        print(json.dumps(listing.as_dict(), indent=2))
    else:
        _print(listing.lines())
    return 0


def cmd_redrive(services: Services, args) -> int:
    if not args.all and not args.ids:
        print("name the files or letters to redrive (see dead-letters), or --all", file=sys.stderr)
        return 2
    done = redrive(services, None if args.all else args.ids, dry_run=args.dry_run)
    if args.json:
        print(json.dumps([{**r.letter.as_dict(), "queue_url": r.queue_url, "sent": r.sent} for r in done], indent=2))
    else:
        _print(r.line() for r in done)
        print(f"{len(done)} message(s) {'would be ' if args.dry_run else ''}sent back to their queues")
    missing = [i for i in args.ids if not any(r.letter.selected_by({i}) for r in done)]
    for i in missing:
        print(f"no dead letter names {i}", file=sys.stderr)
    return 1 if missing else 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m functions.operations", description=__doc__.split("\n\n")[0])
    p.add_argument("--stack", help="take the deployment from this CloudFormation stack's outputs")
    sub = p.add_subparsers(dest="command", required=True)
    check = sub.add_parser("check", help="compare storage and index; with --repair, fix what can be fixed")
    check.add_argument("--repair", action="store_true")
    which = check.add_mutually_exclusive_group()
    which.add_argument("--nights", type=int, default=3, help="the N latest nights (default 3)")
    which.add_argument("--night", action="append", help="this night (YYYY-MM-DD); repeat for more")
    which.add_argument("--all-nights", action="store_true")
    check.add_argument("--stuck-after", type=float, default=900.0, help="seconds before a non-final file is stuck")
    check.add_argument("--abandoned-after", type=float, default=None,
                       help="seconds before an unfinished multipart upload counts as abandoned")
    check.add_argument("--json", action="store_true")
    check.set_defaults(func=cmd_check)
    dead = sub.add_parser("dead-letters", help="list the messages the queues gave up on, with file and reason")
    dead.add_argument("--all", action="store_true", help="also those already redriven")
    dead.add_argument("--json", action="store_true")
    dead.set_defaults(func=cmd_dead_letters)
    red = sub.add_parser("redrive", help="send dead letters back to their queues")
    red.add_argument("ids", nargs="*", metavar="ID", help="a file id or a letter id")
    red.add_argument("--all", action="store_true")
    red.add_argument("--dry-run", action="store_true")
    red.add_argument("--json", action="store_true")
    red.set_defaults(func=cmd_redrive)
    return p


def main(argv: Optional[Sequence[str]] = None, environ: Mapping[str, str] = os.environ) -> int:
    args = parser().parse_args(argv)
    try:
        settings = _settings(args, environ)
    except RuntimeError as exc:
        print(f"{exc}: set them, or name the deployed stack with --stack NAME "
              f"(locally: python -m infra.local {args.command} ...)", file=sys.stderr)
        return 2
    return args.func(Services.from_settings(settings), args)


if __name__ == "__main__":
    sys.exit(main())
