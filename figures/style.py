"""How figures look: colour maps, themes, colours and the legend's place, shared by Plotly and PNG."""
from __future__ import annotations

# key -> label; the two maps below translate a key for Plotly and matplotlib.
COLORMAPS: dict[str, str] = {
    "gray": "Gray",
    "gray_r": "Gray (inverted)",
    "viridis": "Viridis",
    "inferno": "Inferno",
    "magma": "Magma",
    "plasma": "Plasma",
    "cividis": "Cividis",
    "hot": "Hot",
    "turbo": "Turbo",
}
PLOTLY_SCALES = {"gray": "gray", "gray_r": "gray_r", "viridis": "Viridis", "inferno": "Inferno",
                 "magma": "Magma", "plasma": "Plasma", "cividis": "Cividis", "hot": "Hot", "turbo": "Turbo"}
MPL_CMAPS = {"gray": "gray", "gray_r": "gray_r", "viridis": "viridis", "inferno": "inferno", "magma": "magma",
             "plasma": "plasma", "cividis": "cividis", "hot": "hot", "turbo": "turbo"}

THEMES = {
    "dark": {"template": "plotly_dark", "paper": "rgba(0,0,0,0)", "plot": "#1b1b1b", "text": "#e6e6e6",
             "grid": "#3a3a3a", "line": "#5bc0de", "band": "rgba(91,192,222,0.25)", "mpl_bg": "#222222",
             "mpl_axes": "#1b1b1b"},
    "light": {"template": "plotly_white", "paper": "rgba(0,0,0,0)", "plot": "#ffffff", "text": "#222222",
              "grid": "#dddddd", "line": "#2c3e50", "band": "rgba(44,62,80,0.2)", "mpl_bg": "#ffffff",
              "mpl_axes": "#ffffff"},
}
SATURATED_COLOUR = "#ff2d2d"
REJECTED_COLOUR = "#d9534f"
USED_COLOUR = "#5cb85c"
COMPARE_COLOURS = ("#f0ad4e", "#5cb85c", "#d9534f", "#b07cd8", "#e8e8e8")  # spectra drawn over the one shown
# Spectra carry their legend under the plot: above it, it covered the title's RMS and the overlays' labels.
BOTTOM_LEGEND = {"orientation": "h", "yref": "container", "y": 0.0, "yanchor": "bottom", "x": 0.5,
                 "xanchor": "center"}
BOTTOM_LEGEND_MARGIN = 90
PNG_LEGEND_PX = 26  # a row of legend under a static spectrum


def colormap_key(name: str | None) -> str:
    """The key of COLORMAPS that ``name`` means (case aside); gray for anything else."""
    name = (name or "gray").strip()
    if name not in COLORMAPS:
        lowered = name.lower()
        name = lowered if lowered in COLORMAPS else "gray"
    return name


def theme_colours(theme: str) -> dict:
    return THEMES.get(theme, THEMES["dark"])


def compare_colour(index: int) -> str:
    return COMPARE_COLOURS[index % len(COMPARE_COLOURS)]


def style_layout(fig, theme: str, title: str, show_title: bool, height: int | None) -> dict:
    """The theme, title and margins of a Plotly figure; returns the theme's colours."""
    colours = theme_colours(theme)
    fig.update_layout(
        template=colours["template"], paper_bgcolor=colours["paper"], plot_bgcolor=colours["plot"],
        font={"color": colours["text"], "size": 12},
        title={"text": title if show_title else "", "x": 0.5, "xanchor": "center", "font": {"size": 15}},
        margin={"l": 70, "r": 20, "t": 70 if show_title and title else 30, "b": 55},
        height=height,
    )
    return colours


def bottom_legend(fig, **layout) -> None:
    """A spectrum's legend under the plot, with the room it needs."""
    fig.update_layout(showlegend=True, legend=BOTTOM_LEGEND, margin={"b": BOTTOM_LEGEND_MARGIN}, **layout)
