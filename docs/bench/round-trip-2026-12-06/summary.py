"""Markdown table of the round-trip A/B: speed-up per task, new vs old runner, per pair."""
import glob, json, os, sys
root = sys.argv[1]
runs = {}
for d in sorted(glob.glob(f'{root}/nvw-*')):
    who, i = os.path.basename(d).split('-')[1:]
    runs[(who, int(i))] = json.load(open(f'{d}/speculative-smollm2-135m.json'))['results']
pairs = sorted({i for _, i in runs})
print('| task | decoding | ' + ' | '.join(f'pair {i}: new / old' for i in pairs) + ' |')
print('|---|---|' + '---|' * len(pairs))
for task in ('repeat', 'quote_and_explain', 'free'):
    for mode in ('greedy', 'sampled'):
        cells = []
        for i in pairs:
            n, o = runs[('new', i)][task][mode], runs[('old', i)][task][mode]
            cells.append(f"{n['speedup']:.2f}x / {o['speedup']:.2f}x")
        print(f'| {task} | {mode} | ' + ' | '.join(cells) + ' |')
