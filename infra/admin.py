"""python -m infra.admin [--stack NAME] {users,proposals,members,aliases,schedule,resolve} ...

The operator's tool for accounts and proposals, the same against AWS and the local
stack: the deployment comes from the environment (INDEX_TABLE, USER_POOL_ID, and
AWS_ENDPOINT_URL for anything but AWS) or from a deployed stack's outputs (--stack);
`python -m infra.local admin ...` runs it against the running local stack.

    users add ana --password '...' [--staff] [--proposal SO2024A-001]... [--pi-of SO2024A-001]...
    users load users.json            (the format of `python -m infra.local serve --users`)
    users list | users remove ana
    proposals add SO2024A-001 [--title '...'] | proposals list
    members add SO2024A-001 ana [--role pi] | members remove SO2024A-001 ana | members list SO2024A-001
    aliases set 'N188 Hermes' N188-HERMES | aliases remove 'N188 Hermes' | aliases list
    schedule add 2024-03-14 23:10 03:40 SO2024A-001 | schedule remove 2024-03-14 23:10 SO2024A-001
    schedule list [--night 2024-03-14]
    resolve 'S02016B-104'            (what a PROPOSAL header resolves to)
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Mapping, Optional, Sequence

from golive_data.access import AccessError, Directory, normalise_proposal, proposal_id
from golive_data.settings import Settings
from infra.accounts import Accounts, UserSpec, load_users


def _print(rows) -> None:
    for row in rows:
        print(json.dumps(row, sort_keys=True))


def cmd_users(accounts: Accounts, args) -> int:
    if args.action == "add":
        if not args.password:
            raise AccessError("--password is required")
        accounts.create(UserSpec.from_dict({"username": args.username, "password": args.password,
                                            "staff": args.staff, "proposals": args.proposal or [],
                                            "pi_of": args.pi_of or []}))
        print(f"user {args.username} ready")
    elif args.action == "load":
        specs = load_users(args.username)
        for spec in specs:
            accounts.create(spec)
        print(f"{len(specs)} users ready")
    elif args.action == "remove":
        accounts.delete(args.username)
        print(f"user {args.username} removed")
    else:
        directory = {u["username"]: u for u in accounts.directory.users()}
        for user in accounts.cognito_users():
            principal = accounts.directory.principal(user["username"])
            _print([{**user, **principal.public(), "in_directory": user["username"] in directory}])
    return 0


def cmd_proposals(accounts: Accounts, args) -> int:
    if args.action == "add":
        print(f"proposal {accounts.directory.put_proposal(args.proposal, args.title)} ready")
    else:
        _print(accounts.directory.proposals())
    return 0


def cmd_members(accounts: Accounts, args) -> int:
    directory, pid = accounts.directory, proposal_id(args.proposal)
    if args.action == "add":
        if directory.get_user(args.username or "") is None:
            raise AccessError(f"no user {args.username}: `users add` it first")
        directory.add_member(pid, args.username, args.role)
        print(f"{args.username} is {args.role} of {pid}")
    elif args.action == "remove":
        if not directory.remove_member(pid, args.username or ""):
            raise AccessError(f"{args.username} is not a member of {pid}")
        print(f"{args.username} removed from {pid}")
    else:
        _print(directory.members(pid))
    return 0


def cmd_aliases(accounts: Accounts, args) -> int:
    directory = accounts.directory
    if args.action == "set":
        if not args.proposal:
            raise AccessError("aliases set ALIAS PROPOSAL")
        print(f"{directory.set_alias(args.alias, args.proposal)} -> {proposal_id(args.proposal)}")
    elif args.action == "remove":
        directory.remove_alias(args.alias)
        print(f"alias {args.alias} removed")
    else:
        _print([{"alias": k, "proposal": v} for k, v in sorted(directory.aliases().items())])
    return 0


def cmd_schedule(accounts: Accounts, args) -> int:
    directory = accounts.directory
    if args.action == "add":
        entry = directory.add_schedule(args.night, args.start, args.end, args.proposal)
        print(f"{entry['proposal']} from {entry['start']} to {entry['end']} UT (night {entry['night']})")
    elif args.action == "remove":
        directory.remove_schedule(args.night, args.start, args.proposal)
        print("schedule entry removed")
    else:
        _print(directory.schedule([args.night] if args.night else []))
    return 0


def cmd_resolve(accounts: Accounts, args) -> int:
    normal = normalise_proposal(args.header)
    aliases = accounts.directory.aliases()
    print(json.dumps({"header": args.header, "normalised": normal,
                      "proposal": aliases.get(normal, normal) if normal else None,
                      "by": "alias" if normal in aliases else "header" if normal else "schedule (header empty)"}))
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m infra.admin", description=__doc__.split("\n\n")[0])
    p.add_argument("--stack", help="take the deployment from this CloudFormation stack's outputs")
    sub = p.add_subparsers(dest="command", required=True)
    users = sub.add_parser("users", help="accounts (Cognito) and their roles")
    users.add_argument("action", choices=["add", "remove", "list", "load"])
    users.add_argument("username", nargs="?", help="the user (for load: the users file)")
    users.add_argument("--password")
    users.add_argument("--staff", action="store_true")
    users.add_argument("--proposal", action="append", help="member of (repeat)")
    users.add_argument("--pi-of", action="append", help="PI of (repeat)")
    users.set_defaults(func=cmd_users)
    proposals = sub.add_parser("proposals")
    proposals.add_argument("action", choices=["add", "list"])
    proposals.add_argument("proposal", nargs="?")
    proposals.add_argument("--title")
    proposals.set_defaults(func=cmd_proposals)
    members = sub.add_parser("members")
    members.add_argument("action", choices=["add", "remove", "list"])
    members.add_argument("proposal")
    members.add_argument("username", nargs="?")
    members.add_argument("--role", choices=["observer", "pi"], default="observer")
    members.set_defaults(func=cmd_members)
    aliases = sub.add_parser("aliases", help="PROPOSAL header spellings -> proposal")
    aliases.add_argument("action", choices=["set", "remove", "list"])
    aliases.add_argument("alias", nargs="?")
    aliases.add_argument("proposal", nargs="?")
    aliases.set_defaults(func=cmd_aliases)
    schedule = sub.add_parser("schedule", help="which proposal observed when (for empty PROPOSAL headers)")
    schedule.add_argument("action", choices=["add", "remove", "list"])
    schedule.add_argument("night", nargs="?", help="YYYY-MM-DD (the evening's date)")
    schedule.add_argument("start", nargs="?", help="UT, HH:MM (before noon: the next day) or ISO")
    schedule.add_argument("end", nargs="?", help="UT (add only)")
    schedule.add_argument("proposal", nargs="?")
    schedule.add_argument("--night", dest="night_filter")
    schedule.set_defaults(func=cmd_schedule)
    resolve = sub.add_parser("resolve", help="what a PROPOSAL header resolves to")
    resolve.add_argument("header")
    resolve.set_defaults(func=cmd_resolve)
    return p


def _fix_schedule_args(args) -> None:
    """`schedule remove NIGHT START PROPOSAL` has no END; `schedule list --night N`."""
    if args.command != "schedule":
        return
    if args.action == "remove" and args.proposal is None:
        args.proposal, args.end = args.end, None
    if args.action == "list":
        args.night = args.night_filter or args.night
    elif not (args.night and args.start and args.proposal):
        raise AccessError(f"schedule {args.action} NIGHT START{' END' if args.action == 'add' else ''} PROPOSAL")


def main(argv: Optional[Sequence[str]] = None, environ: Mapping[str, str] = os.environ) -> int:
    from functions.operations import deployment_environment

    args = parser().parse_args(argv)
    try:
        settings = Settings.from_env(deployment_environment(args.stack, environ))
        if not settings.user_pool_id:
            raise RuntimeError("USER_POOL_ID is not set")
    except RuntimeError as exc:
        print(f"{exc}: set it, or name the deployed stack with --stack NAME "
              f"(locally: python -m infra.local admin ...)", file=sys.stderr)
        return 2
    accounts = Accounts(settings.client("cognito-idp"), Directory(settings.client("dynamodb"), settings.index_table),
                        settings.user_pool_id)
    try:
        _fix_schedule_args(args)
        return args.func(accounts, args)
    except AccessError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except accounts.cognito.exceptions.InvalidPasswordException as exc:
        print(f"error: {exc.response['Error']['Message']}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
