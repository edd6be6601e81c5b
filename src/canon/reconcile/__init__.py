"""The controller's core: ``reconcile()`` -> Ready | Retry | Stalled, with conditions.

controller.py  one reconcile (fetch -> check out -> apply -> health) and the loop
webhook.py     GitHub-style HMAC-SHA256 verification and delivery de-duplication
"""
