#!/usr/bin/env bash
# Screenshots of the built documentation site, to look at it without a desktop browser.
#
#   make docs && tools/screenshot_docs.sh [SITE_DIR] [OUT_DIR]
#
# SITE_DIR defaults to site/, OUT_DIR to build/docs-screenshots/. Captures the landing page, one API
# page and one notebook page (PAGES="index.html api/solvers/index.html ..." to choose), each in the
# light scheme, plus the landing page in the dark scheme. Uses a headless Chromium (Debian:
# `apt-get install chromium`) or wkhtmltoimage; without either it says so and exits 0.
#
# MathJax comes from its CDN when a page is viewed; offline (as here) formulas stay as TeX source.
# MATHJAX_JS=/path/to/tex-mml-chtml.js captures with a local MathJax 3 instead (the site is copied
# to a scratch folder and the CDN address replaced there; the built site is not touched).
set -euo pipefail

SITE=${1:-site}
OUT=${2:-build/docs-screenshots}
PAGES=${PAGES:-"index.html api/solvers/index.html notebooks/kernel_solvers/index.html"}
WIDTH=${WIDTH:-1280}
HEIGHT=${HEIGHT:-2400}

browser=""
for candidate in chromium chromium-browser google-chrome google-chrome-stable; do
  if command -v "$candidate" >/dev/null 2>&1; then browser=$candidate; break; fi
done
if [[ -z "$browser" ]] && ! command -v wkhtmltoimage >/dev/null 2>&1; then
  echo "screenshot_docs: skipped (no chromium or wkhtmltoimage; Debian: apt-get install chromium)"
  exit 0
fi
if [[ ! -f "$SITE/index.html" ]]; then
  echo "screenshot_docs: $SITE/index.html not found; build the site first (make docs)" >&2
  exit 1
fi
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
SITE=$(cd "$SITE" && pwd)

scratch=""
cleanup() { [[ -n "$scratch" ]] && rm -rf "$scratch"; return 0; }
trap cleanup EXIT
if [[ -n "${MATHJAX_JS:-}" ]]; then
  scratch=$(mktemp -d)
  cp -r "$SITE" "$scratch/site"
  SITE="$scratch/site"
  grep -rl --include='*.html' 'cdn.jsdelivr.net/npm/mathjax@3/es5/tex-mml-chtml.js' "$SITE" | while read -r f; do
    sed -i "s#https://cdn.jsdelivr.net/npm/mathjax@3/es5/tex-mml-chtml.js#file://$MATHJAX_JS#" "$f"
  done
fi

shoot() {  # shoot PAGE PNG [dark]
  local url="file://$SITE/$1" png="$2" dark="${3:-}"
  if [[ -n "$browser" ]]; then
    local flags=(--headless --no-sandbox --disable-gpu --hide-scrollbars --allow-file-access-from-files
                 --window-size="$WIDTH,$HEIGHT" --virtual-time-budget=8000 --screenshot="$png")
    [[ -n "$dark" ]] && flags+=(--force-dark-mode --blink-settings=preferredColorScheme=0)
    "$browser" "${flags[@]}" "$url" >/dev/null 2>&1
  else
    wkhtmltoimage --quiet --width "$WIDTH" --height "$HEIGHT" --javascript-delay 3000 "$url" "$png"
  fi
  echo "screenshot_docs: $png"
}

for page in $PAGES; do
  name=${page%/index.html}; name=${name%.html}; name=${name//\//_}
  shoot "$page" "$OUT/$name.png"
done
shoot index.html "$OUT/index_dark.png" dark
