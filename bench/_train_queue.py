import sys; from pathlib import Path
sys.path.insert(0, str(Path(__file__).parent))
from held_out_sets import train_without
runs, recipe = Path(sys.argv[1]), Path(sys.argv[2])
for name in sys.argv[3:]:
    print("==", name, flush=True)
    train_without(None if name == "all" else name, runs, recipe)
