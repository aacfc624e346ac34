"""Human names for what the audit log stores as identifiers: actions and the fields of an
event's details. The page, its Action filter and the CSV export all read them from here.

An action or field without an entry still gets a readable name ("sync_inventory" -> "Sync
inventory"), so a new one never shows as a raw identifier; an entry is for a better name.
"""

from __future__ import annotations

import json

ACTION_NAMES = {
    # Operations are named by their kinds (composer/kinds/), through name_actions().
    "cancel_operation": "Cancel an operation",
    "pause_operation": "Pause an operation",
    "resume_operation": "Resume an operation",
    "approve_plan": "Approve a plan",
    "discard_plan": "Discard a plan",
    "view_plan": "View a plan",
    # Pools, images and hypervisors.
    "create_pool": "Create a pool",
    "resize_pool": "Resize a pool",
    "pool_datastores": "Change a pool's datastores",
    "pool_deleted": "Pool deleted",
    "desktop_interrupted": "Desktop put in Error (its operation was lost)",
    "register_image_version": "Register an image version",
    "test_connection": "Test a hypervisor connection",
    "sync_inventory": "Sync a hypervisor's inventory",
    # Pages, for denials.
    "view_pools": "View pools",
    "view_pool": "View a pool",
    "view_desktop": "View a desktop",
    "view_datastores": "View datastores",
    "view_images": "View images",
    "view_hypervisors": "View hypervisors",
    "view_operations": "View operations",
    "view_operation": "View an operation",
    "helpdesk": "Use the helpdesk",
    "view_audit": "View the audit log",
    "export_audit": "Export the audit log",
    # Personal API tokens.
    "create_api_token": "Create an API token",
    "revoke_api_token": "Revoke an API token",
    "manage_api_tokens": "Manage every user's API tokens",
    # Sign-in and requests.
    "login": "Sign in",
    "rejected_input": "Request rejected (bad input)",
}

DETAIL_LABELS = {
    "desktops": "Desktops",
    "desktop_names": "Desktops acted on",
    "start_at": "Start",
    "logoff_policy": "Logoff policy",
    "grace_seconds": "Grace period (s)",
    "stop_on_error": "Stop at the first error",
    "warning_message": "Message to the user",
    "action": "Power action",
    "keep_disks": "Keep persistent disks",
    "delete_pool": "Delete the pool",
    "target_version": "Image version",
    "image_version": "Image version",
    "naming_pattern": "Naming pattern",
    "overcommit": "Over-commit",
    "size": "Size",
    "old_size": "Size before",
    "new_size": "New size",
    "datastores": "Datastores",
    "succeeded": "Desktops succeeded",
    "failed": "Desktops failed",
    "halted": "Desktops halted",
    "skipped": "Desktops skipped",
    "method": "Method",
    "path": "Address",
    "filters": "Filters",
    "up_to_event": "Up to event",
    "whole_pool": "Whole pool",
    "state": "State before",
    "api_token": "API token",
    "expires_at": "Expires",
    "owner": "Owner",
}


def _humanized(identifier: str) -> str:
    text = identifier.replace("_", " ").strip()
    return text[:1].upper() + text[1:]


def name_actions(names: dict[str, str]) -> None:
    """Names given by the code that defines the actions (each operation kind its own)."""
    ACTION_NAMES.update(names)


def action_name(action: str) -> str:
    return ACTION_NAMES.get(action) or _humanized(action)


def detail_label(key: str) -> str:
    return DETAIL_LABELS.get(key) or _humanized(key)


def detail_value(value) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if value is None or value == "":
        return "—"
    if isinstance(value, list):
        return ", ".join(detail_value(v) for v in value) or "none"
    if isinstance(value, dict):
        return "; ".join(f"{detail_label(k)}: {detail_value(v)}" for k, v in value.items())
    return str(value)


def details(parameters: dict) -> list[tuple[str, str]]:
    """An event's parameters as (label, value) pairs, in the order they were recorded."""
    return [(detail_label(k), detail_value(v)) for k, v in (parameters or {}).items()]


def details_json(parameters: dict) -> str:
    """The parameters as one JSON cell (the CSV export), keys as recorded."""
    return json.dumps(parameters or {}, ensure_ascii=False, sort_keys=False, default=str)
