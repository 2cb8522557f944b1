"""The ground floor: models, errors, policy, inputs, manifest and the capture service.

Nothing in here imports any other part of distshot, so every caller (the actor, the
embedded runner, tests) can hand the capture service any engine and storage.
"""
