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

# Unbuffered: Bolt's output and its children's stay in order in the job log.
# No PIP_NO_CACHE_DIR here: the measured project's environments share pip's
# and uv's caches under HOME between base and head.
ENV PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# Bolt's dependencies, in a stage of their own: their layer stays cached while
# Bolt's sources change, and no wheelhouse reaches the final image.
# On GitHub the context has no .wheelhouse/ (the pattern then matches nothing)
# and pip installs from PyPI. A local build (.ci/image/build) wheels the
# dependencies on the host first, because the build cannot always reach the
# index from inside.
FROM runtime AS deps
COPY pyproject.toml .wheelhous[e] /tmp/bolt-deps/
# hadolint ignore=DL3013
RUN python3 -c 'import tomllib; print(*tomllib.load(open("/tmp/bolt-deps/pyproject.toml", "rb"))["project"]["dependencies"], sep="\n")' \
      >/tmp/bolt-deps/requirements.txt \
 && python3 -m venv /opt/bolt \
 && if ls /tmp/bolt-deps/*.whl >/dev/null 2>&1; then \
      /opt/bolt/bin/pip install --no-cache-dir --no-index --find-links /tmp/bolt-deps -r /tmp/bolt-deps/requirements.txt; \
    else \
      /opt/bolt/bin/pip install --no-cache-dir -r /tmp/bolt-deps/requirements.txt; \
    fi

# Bolt itself, built into a wheel from the context's sources.
FROM deps AS wheel
COPY . /tmp/bolt-src
RUN if ls /tmp/bolt-src/.wheelhouse/*.whl >/dev/null 2>&1; then \
      /opt/bolt/bin/pip wheel --no-cache-dir --no-deps --no-index --find-links /tmp/bolt-src/.wheelhouse --wheel-dir /tmp/dist /tmp/bolt-src; \
    else \
      /opt/bolt/bin/pip wheel --no-cache-dir --no-deps --wheel-dir /tmp/dist /tmp/bolt-src; \
    fi

FROM runtime
COPY --from=deps /opt/bolt /opt/bolt
COPY --from=wheel /tmp/dist /tmp/dist
# Only Bolt's own commands go on PATH (bolt, and uv for the measured project's
# environments): `python3` stays Debian's clean interpreter, without Bolt's
# dependencies in it.
# hadolint ignore=DL3013
RUN /opt/bolt/bin/pip install --no-cache-dir --no-deps --no-index /tmp/dist/*.whl \
 && rm -rf /tmp/dist \
 && ln -s /opt/bolt/bin/bolt /opt/bolt/bin/uv /usr/local/bin/ \
 && bolt --version
ENTRYPOINT ["bolt"]
