#!/usr/bin/env bash
# System packages for the live-stream tests: a real RTSP server (GStreamer's gst-rtsp-server, driven by the
# system python3 through python3-gi) and ffmpeg to cut H.264 test clips. Idempotent: installs only what is
# missing, so a second run does no apt work at all.
set -euo pipefail

PACKAGES=(
    ffmpeg
    python3-gi
    gir1.2-gst-rtsp-server-1.0
    gstreamer1.0-plugins-good
    gstreamer1.0-plugins-bad
)

missing=()
for package in "${PACKAGES[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$package")
    fi
done
if [ ${#missing[@]} -eq 0 ]; then
    exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    SUDO="sudo -n"
fi
echo "installing system packages: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq >/dev/null
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
/usr/bin/python3 -c "import gi; gi.require_version('GstRtspServer', '1.0'); from gi.repository import GstRtspServer"
