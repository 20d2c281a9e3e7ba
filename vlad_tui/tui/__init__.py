"""The Textual app: overview, one screen per phase, rollback, confirmation, help.

Everything that talks to a target runs in the runbook engine (no Textual there); this package
only drives it from async workers and renders its events.
"""
