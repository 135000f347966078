"""Draw the validation curves of several ``convergence_curve.py`` runs in one picture.

    python tools/analysis_tools/plot_curves.py work_dirs/convergence/seg_*/*/curve.json \
        --out seg_seed100.png --title "seg, seed 100"

Each curve is labelled with its method (and loss weight), seed and validation size, so that a
teacher and its students, or one student's weights, can be read side by side.
"""
import argparse
import sys

from diffkd_mm.demo.curves import load_curve, run_name
from diffkd_mm.fileio import save_figure


def label(curve: dict) -> str:
    return f'{run_name(curve)}, seed {curve["seed"]}, {curve["num_val"]} val'


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('curves', nargs='+', help='curve.json files of convergence_curve.py')
    parser.add_argument('--out', required=True, help='the picture (.png)')
    parser.add_argument('--title', default='', help='its title')
    args = parser.parse_args(argv)
    try:
        curves = [load_curve(path) for path in args.curves]
    except ValueError as err:
        sys.exit(f'plot_curves.py: {err}')
    metrics = {c['metric'] for c in curves}
    if len(metrics) > 1:
        sys.exit(f'plot_curves.py: the curves measure different metrics {sorted(metrics)}: '
                 'draw one task at a time')
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 3.6))
    for curve in curves:
        ax.plot(curve['iters'], curve['values'], marker='o', markersize=3, label=label(curve))
        ax.annotate(
            f'{curve["values"][-1]:.1f}', (curve['iters'][-1], curve['values'][-1]),
            textcoords='offset points',
            xytext=(4, 0),
            fontsize=7,
            va='center')
    ax.set_xlabel('iteration')
    ax.set_ylabel(f'{metrics.pop()} (%)')
    ax.set_title(args.title, fontsize=9)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    save_figure(fig, args.out)
    plt.close(fig)
    print(f'plot_curves.py: {args.out}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
