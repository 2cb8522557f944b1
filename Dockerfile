# distshot: one image for the worker, the HTTP service and the dispatcher; the command picks
# which (`worker`, `serve --host 0.0.0.0 ...`, `dispatch URLS ...`, any `distshot` command).
#
#   deploy/build-wheels.sh                                  # wheels into .build/wheels
#   podman build --format docker -t localhost/distshot .    # (or docker build -t distshot .)
#
# The wheels are built on the host and installed with --no-index: nothing is downloaded from
# PyPI inside the build, and no compiler or pip is left in the image. Chromium, its driver and
# the fonts are Debian's; nothing downloads a browser. --format docker keeps the HEALTHCHECK
# (OCI images have none).

FROM debian:bookworm-slim AS runtime
# Scripts beyond Latin (CJK, Devanagari): the fonts `make system-deps` installs on a host.
# --build-arg EXTRA_FONTS= leaves them out (about 90 MB smaller; such text draws as boxes).
ARG EXTRA_FONTS="fonts-noto-cjk fonts-lohit-deva"
# libatomic1: Playwright's bundled node driver needs it (without it every job fails with
# "Connection closed while reading from the driver"). tini: PID 1, reaps Chromium's zombies.
RUN apt-get update -q \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
        python3 chromium chromium-driver libatomic1 tini ca-certificates \
        fonts-liberation fonts-noto-color-emoji ${EXTRA_FONTS} \
    && rm -rf /var/lib/apt/lists/* /var/cache/apt/* /var/log/apt /var/log/dpkg.log

FROM runtime AS build
COPY .build/wheels/distshot/ /wheels/
# pip runs from its own wheel: the image needs neither python3-pip nor python3-venv.
RUN python3 -m venv --without-pip /opt/distshot \
    && pip_wheel=$(ls /wheels/pip-*.whl) \
    && /opt/distshot/bin/python "$pip_wheel/pip" install -q --no-index --find-links /wheels \
        --no-cache-dir --disable-pip-version-check 'distshot[all]'
# EasyList and EasyPrivacy for block_ads and block_trackers, where the engines look for them
# (sys.prefix/share/distshot/filterlists): taken out of Debian's uBlock Origin package, not
# installed (the Makefile's filter-lists step says why).
RUN apt-get update -q && cd /tmp && apt-get download -q webext-ublock-origin-chromium \
    && dpkg-deb --fsys-tarfile webext-ublock-origin-chromium_*.deb \
        | tar -x ./usr/share/chromium/extensions/ublock-origin/assets/thirdparties/easylist \
    && install -D -m 644 -t /opt/distshot/share/distshot/filterlists \
        usr/share/chromium/extensions/ublock-origin/assets/thirdparties/easylist/easylist.txt \
        usr/share/chromium/extensions/ublock-origin/assets/thirdparties/easylist/easyprivacy.txt

FROM runtime
COPY --from=build /opt/distshot /opt/distshot
COPY deploy/container/entrypoint.sh /usr/local/bin/distshot-entrypoint
COPY deploy/container/healthcheck.py /usr/local/bin/distshot-healthcheck
COPY deploy/container/make_bucket.py /usr/local/bin/distshot-make-bucket
# A non-root user: Chromium keeps its sandbox (no --no-sandbox, which it needs as root).
# /var/lib/distshot is the working folder and serve's state (a volume in compose.yaml).
RUN useradd --uid 10001 --user-group --create-home --home-dir /home/distshot \
        --shell /usr/sbin/nologin distshot \
    && install -d -o distshot -g distshot /var/lib/distshot
ENV PATH=/opt/distshot/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    DISTSHOT_BROWSER_PATH=/usr/bin/chromium \
    DISTSHOT_DRIVER_PATH=/usr/bin/chromedriver
USER distshot
WORKDIR /var/lib/distshot
EXPOSE 8000
# Probes DISTSHOT_HEALTH_URL when set (serve: /healthz), else checks the main process.
HEALTHCHECK --interval=30s --timeout=10s --start-period=60s --retries=3 \
    CMD ["distshot-healthcheck"]
ENTRYPOINT ["tini", "--", "distshot-entrypoint"]
CMD ["worker"]
