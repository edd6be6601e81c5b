"""Deploy targets: one small ``Deployer`` protocol (target.py), its backends and a fake.

target.py   Release / Live / Rollout and the Deployer protocol
rootfs.py   a model image from the layout -> a verified, extracted filesystem
router.py   the local target's reverse proxy (its own process, on the declared port)
local.py    the local target: supervised model servers behind the router
podman.py   the podman target: the model image in containers behind the same router
fake.py     an in-memory Deployer for tests of everything above the target
"""
