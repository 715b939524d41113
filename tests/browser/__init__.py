"""Helpers for the browser journeys: Debian's Chromium driven by Playwright,
axe-core for accessibility, and screenshots kept as artefacts."""

from pathlib import Path

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
AXE_SCRIPT = Path(__file__).parent / "node_modules" / "axe-core" / "axe.min.js"
ARTEFACTS = Path(__file__).resolve().parents[2] / "var" / "artefacts"
MOBILE = {"width": 375, "height": 812}
DESKTOP = {"width": 1280, "height": 900}
# The widths a page is checked at, by name.
VIEWPORTS = {"phone": MOBILE, "desktop": DESKTOP}
# The narrowest width a reader's page must fit without scrolling sideways: WCAG
# 2.2's Reflow (1.4.10), 320 CSS pixels, as a phone at 400 % zoom or a small one.
NARROWEST = {"width": 320, "height": 640}


# axe-core's impacts, least first.
IMPACTS = ("minor", "moderate", "serious", "critical")


def accessibility_violations(
    page, *, at_least: str = "serious", excusing: tuple[str, ...] = ()
) -> list[str]:
    """axe-core's violations on the page (its WCAG 2.x A and AA rules and best
    practices) of impact `at_least` or worse, one line each, less the elements
    whose selector begins as one `excusing` does (not ours to fix): every element
    is looked at, not only the first few a line names."""
    page.add_script_tag(path=str(AXE_SCRIPT))
    violations = page.evaluate(
        """async () => (await axe.run(document, {resultTypes: ["violations"]}))
            .violations.map(v => ({id: v.id, impact: v.impact, help: v.help,
                                   targets: v.nodes.map(n => n.target.join(" "))}))"""
    )
    return [
        f"{v['impact']}: {v['id']} ({v['help']}) at {', '.join(targets[:3])}"
        for v in violations
        if IMPACTS.index(v["impact"]) >= IMPACTS.index(at_least)
        for targets in [[t for t in v["targets"] if not t.startswith(excusing)]]
        if targets
    ]


def save_screenshot(page, name: str) -> Path:
    ARTEFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTEFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def wider_than_the_screen(page, width: int) -> list[str]:
    """The first few elements reaching past a screen `width` pixels wide, outside a
    box that scrolls sideways. On a phone the browser zooms such a page out to fit
    it all, so every word shrinks: innerWidth grows with the page, and only the
    screen's own width tells."""
    return page.evaluate(
        """width => [...document.querySelectorAll("body *")]
            .filter(element => element.getBoundingClientRect().right > width + 0.5)
            .filter(element => ![...function* () {
                for (let box = element.parentElement; box; box = box.parentElement)
                    yield getComputedStyle(box).overflowX;
            }()].some(overflow => overflow === "auto" || overflow === "scroll"))
            .slice(0, 3)
            .map(element => element.tagName.toLowerCase()
                 + (element.id ? "#" + element.id : "")
                 + [...element.classList].map(name => "." + name).join(""))""",
        width,
    )
