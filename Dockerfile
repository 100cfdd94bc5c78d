# Bolt's GitHub Action image: built by the runner from this file on every run
# (`runs.image: Dockerfile` in action.yml), so it stays small and quick to build.
#
# The runner starts it as root with the checked-out repository on
# /github/workspace (owned by uid 1001), HOME=/github/home and the inputs in
# INPUT_<NAME> variables; the entry point is `bolt`, the args `action`.
# GitHub's rules for action images: no USER, no WORKDIR.

FROM debian:bookworm-slim AS runtime

# python3: Bolt itself, and the interpreter the measured project's environments
#          start from (uv can fetch other versions for the `python` input).
# git:     refs, merge-base, worktrees of base and head.
# valgrind: instruction counts (measure: instructions).
# The workspace belongs to another user than root: without a safe.directory
# entry git refuses it ("dubious ownership"); a system-wide entry covers the
# workspace, the worktrees Bolt makes, and every git that Bolt's children run,
# whatever environment they are given.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      ca-certificates git python3 python3-venv valgrind \
 && rm -rf /var/lib/apt/lists/* \
 && git config --system --add safe.directory '*'

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1

# Build Bolt into /opt/bolt in a separate stage, so neither the sources nor a
# local wheelhouse end up in the final image.
FROM runtime AS build
COPY . /tmp/bolt-src
# On GitHub the context has no .wheelhouse/ and pip installs from PyPI. A local
# build (.ci/image/build) prepares the wheels on the host instead, because the
# build cannot always reach the index from inside.
# hadolint ignore=DL3013
RUN python3 -m venv /opt/bolt \
 && if ls /tmp/bolt-src/.wheelhouse/*.whl >/dev/null 2>&1; then \
      /opt/bolt/bin/pip install --no-index --find-links /tmp/bolt-src/.wheelhouse /tmp/bolt-src; \
    else \
      /opt/bolt/bin/pip install /tmp/bolt-src; \
    fi \
 && /opt/bolt/bin/bolt --version

FROM runtime
COPY --from=build /opt/bolt /opt/bolt
# Only Bolt's own commands go on PATH (bolt, and uv for the measured project's
# environments): `python3` stays Debian's clean interpreter, without Bolt's
# dependencies in it.
RUN ln -s /opt/bolt/bin/bolt /opt/bolt/bin/uv /usr/local/bin/
ENTRYPOINT ["bolt"]
