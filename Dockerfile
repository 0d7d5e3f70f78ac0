# The edgeward agent image (the Open Horizon service's container; see horizon-service/).
# It packages a tree built on a machine of the image's architecture (npm ci && npm run build:
# the addon and BPF objects are native code), with node from NODE_IMAGE:
#   docker build -t edgeward-agent_amd64:0.1.0 .
# Run (what the Horizon deployment does; see horizon-service/README.md):
#   docker run -d --privileged --pid host --network host \
#     -v /:/host:ro,rslave -v /sys/fs/bpf:/host/sys/fs/bpf:rw,rslave \
#     -v /var/lib/edgeward:/host/var/lib/edgeward:rw edgeward-agent_amd64:0.1.0
# Without a registry, BASE_IMAGE and NODE_IMAGE can be local images (tests/helpers/rootfs.ts).
ARG BASE_IMAGE=debian:bookworm-slim
ARG NODE_IMAGE=node:20-bookworm-slim

FROM ${NODE_IMAGE} AS node

# The runtime tree, without development packages.
FROM ${BASE_IMAGE} AS tree
COPY --from=node /usr/local/bin/node /opt/edgeward/node/bin/node
COPY package.json package-lock.json /opt/edgeward/
COPY node_modules /opt/edgeward/node_modules
COPY scripts/prune-dev-modules.js /opt/edgeward/scripts/prune-dev-modules.js
RUN /opt/edgeward/node/bin/node /opt/edgeward/scripts/prune-dev-modules.js /opt/edgeward
COPY bin /opt/edgeward/bin
COPY dist /opt/edgeward/dist
COPY build/native/Release/edgeward.node /opt/edgeward/build/native/Release/edgeward.node
COPY policies /opt/edgeward/policies
COPY horizon-service/image/entrypoint.sh horizon-service/image/hub-entrypoint.sh /opt/edgeward/horizon/

FROM ${BASE_IMAGE}
# The addon's libraries (the base may have them already); util-linux gives mount and chroot.
RUN if [ "$(dpkg-query -W -f='${Status}\n' libbpf1 libelf1 2>/dev/null | grep -c 'install ok installed')" != 2 ]; then \
      apt-get update && apt-get install -y --no-install-recommends libbpf1 libelf1 && rm -rf /var/lib/apt/lists/*; \
    fi
COPY --from=tree /opt/edgeward /opt/edgeward
LABEL org.opencontainers.image.title="edgeward agent" \
      org.opencontainers.image.description="Runtime security agent for Open Horizon edge nodes (KubeArmor policies)" \
      org.opencontainers.image.licenses="Apache-2.0"
ENTRYPOINT ["/opt/edgeward/horizon/entrypoint.sh"]
