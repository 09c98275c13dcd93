# The operator image.
#   docker build -t volcano-topology .                                  # core only (vendors add theirs)
#   docker build --build-arg PROVIDERS="label ufm" -t volcano-topology .  # with providers from providers/
# Without a registry, `make image-local` builds BASE_IMAGE from Debian packages and builds this file with
# buildah (see deploy/README.md). Vendors: `FROM` this image, `pip install` their provider package
# (the `volcano-topology new-provider` template's Dockerfile does exactly that).
#
# BASE_IMAGE must provide python3 (>= 3.11) with the venv module, in both stages.
ARG BASE_IMAGE=python:3.11-slim-bookworm

FROM ${BASE_IMAGE} AS build
# Space-separated directory names under providers/ to install next to the operator, e.g. "label ufm".
ARG PROVIDERS=""
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
WORKDIR /src
RUN python3 -m venv /opt/volcano-topology
COPY pyproject.toml README.md LICENSE ./
COPY crds ./crds
COPY volcano_topology ./volcano_topology
COPY providers ./providers
RUN /opt/volcano-topology/bin/pip install . \
 && for provider in ${PROVIDERS}; do \
      test -f "providers/${provider}/pyproject.toml" || { echo "no provider package providers/${provider}" >&2; exit 1; }; \
      /opt/volcano-topology/bin/pip install "./providers/${provider}" || exit 1; \
    done \
 && /opt/volcano-topology/bin/python -m compileall -q /opt/volcano-topology \
 && /opt/volcano-topology/bin/volcano-topology providers

# The final stage: the base plus the virtualenv; nothing built here, no compilers, no build context.
FROM ${BASE_IMAGE}
ARG VERSION=0.1.0
ARG SOURCE=https://github.com/volcano-topology/volcano-topology
ARG REVISION=""
LABEL org.opencontainers.image.title="volcano-topology" \
      org.opencontainers.image.description="Keeps Volcano HyperNodes true to the datacenter network, from pluggable topology providers" \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /opt/volcano-topology /opt/volcano-topology
# Bytecode is compiled at build time: with a read-only root filesystem nothing needs writing but /tmp.
ENV PATH=/opt/volcano-topology/bin:${PATH} \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp
# kopf asks for the user's name at startup (getpass: $LOGNAME first, then the passwd entry): give both, so
# that any uid a cluster assigns (runAsUser) works, not only this one.
RUN echo 'volcano-topology:x:65532:65532::/tmp:/usr/sbin/nologin' >> /etc/passwd \
 && echo 'volcano-topology:x:65532:' >> /etc/group
ENV LOGNAME=volcano-topology
# Numeric, so that runAsNonRoot can verify it.
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["volcano-topology"]
CMD ["run"]
