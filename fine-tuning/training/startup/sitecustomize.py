"""Python runs this at start-up in every process whose PYTHONPATH holds this
folder. 2_train_lora.sh puts it there for Axolotl, so that its launcher and its
trainer start as the stage scripts do (styletune/startup.py): trackers off, no
hub code, known-harmless warnings hidden, STYLETUNE_BNB_CPU_PATH honoured."""
from styletune.startup import prepare

prepare()
