# The operator image: `docker build -t volcano-topology .`
# Vendor providers are added with `pip install` in a derived image, or mounted with --provider-path.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY volcano_topology ./volcano_topology
COPY crds ./crds
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim
RUN useradd --uid 65532 --no-create-home --shell /usr/sbin/nologin operator
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
USER 65532
ENTRYPOINT ["volcano-topology"]
CMD ["--help"]
