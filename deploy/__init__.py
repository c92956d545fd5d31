"""The cluster deployment: kustomize base, Istio overlay, the container's entry point.

Everything under ``deploy/base`` and ``deploy/istio`` is written by
``python -m deploy.render`` (:mod:`deploy.render`); ``tests/deploy`` checks that
the committed files are fresh, build with kustomize and validate offline.
"""
