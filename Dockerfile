# syncclass server image: `docker build -t syncclass . && docker run --network host syncclass`
FROM python:3.11-slim-bookworm

WORKDIR /app
COPY pyproject.toml README.md ./
COPY syncclass ./syncclass
COPY signaling ./signaling
COPY media ./media
COPY recorder ./recorder
COPY bench ./bench
RUN pip install --no-cache-dir .

# Lessons, keys and recordings live here; mount a volume to keep them.
VOLUME /data
ENV SYNCCLASS_HOST=0.0.0.0 \
    SYNCCLASS_DATA_DIR=/data
EXPOSE 8080/tcp
# ICE uses UDP: publish a range (SYNCCLASS_ICE_PORTS) or run with --network host, and set
# SYNCCLASS_ICE_ANNOUNCE to the address classrooms reach the server at.
ENTRYPOINT ["syncclass", "serve"]
