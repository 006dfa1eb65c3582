#!/usr/bin/env bash
# Full-page screenshot of the tour report, to look at it without a desktop browser.
#
#   make tour && tools/screenshot_tour.sh [REPORT] [PNG]
#
# REPORT defaults to tour/report.html, PNG to build/tour-screenshots/report.png. The page height is
# measured first (a tall window, then the PNG is cropped to the page), so the whole report is one
# image; WIDTH (default 1280) sets the window width. Also writes PNG's slices of SLICE_HEIGHT pixels
# (default 1600) as report-01.png, report-02.png, ... for viewers that shrink tall images.
# Uses a headless Chromium (Debian: `apt-get install chromium`); without one it says so and exits 0.
set -euo pipefail

REPORT=${1:-tour/report.html}
PNG=${2:-build/tour-screenshots/report.png}
WIDTH=${WIDTH:-1280}
MAX_HEIGHT=${MAX_HEIGHT:-16000}
SLICE_HEIGHT=${SLICE_HEIGHT:-1600}

browser=""
for candidate in chromium chromium-browser google-chrome google-chrome-stable; do
  if command -v "$candidate" >/dev/null 2>&1; then browser=$candidate; break; fi
done
if [[ -z "$browser" ]]; then
  echo "screenshot_tour: skipped (no chromium; Debian: apt-get install chromium)"
  exit 0
fi
if [[ ! -f "$REPORT" ]]; then
  echo "screenshot_tour: $REPORT not found; run the tour first (make tour)" >&2
  exit 1
fi
mkdir -p "$(dirname "$PNG")"
url="file://$(cd "$(dirname "$REPORT")" && pwd)/$(basename "$REPORT")"
flags=(--headless --no-sandbox --disable-gpu --hide-scrollbars --allow-file-access-from-files
       --virtual-time-budget=5000)

# The page's height: chromium prints the DOM after layout; a one-line script writes the height into it.
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
sed 's#</body>#<script>document.title="H="+document.documentElement.scrollHeight</script></body>#' \
  "$REPORT" > "$scratch/page.html"
height=$("$browser" "${flags[@]}" --window-size="$WIDTH,1000" --dump-dom "file://$scratch/page.html" 2>/dev/null \
         | grep -o '<title>H=[0-9]*' | head -1 | sed 's/.*=//' || true)
if [[ -z "$height" ]]; then height=$MAX_HEIGHT; fi
height=$(( height > MAX_HEIGHT ? MAX_HEIGHT : height ))

"$browser" "${flags[@]}" --window-size="$WIDTH,$height" --screenshot="$PNG" "$url" >/dev/null 2>&1
echo "screenshot_tour: $PNG (${WIDTH}x${height})"

# Slices, for viewers that scale a tall image down until its text cannot be read.
PYTHON=${PYTHON:-python3}
if "$PYTHON" -c "import matplotlib" >/dev/null 2>&1; then
  "$PYTHON" - "$PNG" "$SLICE_HEIGHT" <<'EOF'
import sys
import matplotlib.image as mpimg

png, step = sys.argv[1], int(sys.argv[2])
img = mpimg.imread(png)
stem = png[:-4] if png.endswith(".png") else png
for i, top in enumerate(range(0, img.shape[0], step), start=1):
    mpimg.imsave(f"{stem}-{i:02d}.png", img[top:top + step])
    print(f"screenshot_tour: {stem}-{i:02d}.png")
EOF
fi
