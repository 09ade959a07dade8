"""What an experiment is: its name, parameters and CSV files, a function that measures and one that summarises.

bench.py runs the experiments of registry.EXPERIMENTS in order; for each it calls

    rows = run(ctx)              # measures; {csv name: [row dict, ...]} (bench.py writes the CSV files)
    figs = plot(rows, ctx)       # optional: writes OUT/*.dat, returns [(gnuplot script in plots/, png), ...]
    summary = summarise(rows, ctx)  # a Summary: the report's sections and targets for these rows

`--reanalyse DIR` calls plot and summarise only, with the rows read back from DIR's CSV files and ctx.params from
DIR/run.json, so that a report can be rewritten (or its code changed) without measuring again."""

from .report import mark


class Summary:
    """The part of RESULTS.md that one experiment contributes: sections (in order) and rows of the targets table."""

    def __init__(self):
        self.sections = []
        self.targets = []

    def section(self, title, lines, figs=()):
        """A `## title` section: its markdown lines, then the figures (png names) drawn below them."""
        self.sections.append(dict(title=title, lines=list(lines), figs=list(figs)))

    def target(self, exp, target, measured, ok, fig=None):
        """A row of the targets table: experiment number, target, what was measured, met or missed, its figure."""
        self.targets.append(dict(exp=exp, target=target, measured=measured, verdict=mark(ok), fig=fig))


class Experiment:
    """One experiment of the registry.

    name: its --only key ("exp5"), also the key of its noise figure; about: one sentence for --list; files: {csv name: header} of the rows that run
    returns, in the order they are written; params: {"full": {...}, "quick": {...}}, keys prefixed by the name
    ("exp5_n"), merged into ctx.params; prepare(ctx): optional, called for every experiment before the first runs
    (e.g. to fit a parameter to the machine); run, summarise, plot: see the module's docstring."""

    def __init__(self, name, about, files, params, run, summarise, plot=None, prepare=None):
        self.name = name
        self.about = " ".join(about.split())
        self.files = dict(files)
        self.params = params
        self.run = run
        self.summarise = summarise
        self.plot = plot
        self.prepare = prepare
        for mode in ("full", "quick"):
            for k in params.get(mode, {}):
                if not k.startswith(name + "_"):
                    raise ValueError("%s: parameter %s must start with %s_" % (name, k, name))

    def rows(self, data):
        """{csv name: rows} with every file of the experiment present ([] for a missing one)."""
        data = data or {}
        return {f: list(data.get(f) or []) for f in self.files}
