"""Training: ``fit`` (the loop, run folder, exact resume, DDP) and ``evaluate`` (loss, top-1/5, confusion).

Modules: ``trainer`` (the loop, ``fit``, ``run_training``), ``state`` (what a checkpoint restores),
``callbacks`` (files, checkpoints, console, early stopping, TensorBoard, NaN guard), ``evaluation``,
``step`` (one optimizer step), ``inputs`` (DataSplit / Dataset / DataLoader), ``config``, ``rundir``.

The counterparts of Keras' ``compile``/``fit``/``evaluate``::

    from resnet import create_model
    from resnet.data import load
    from resnet.train import TrainConfig, fit, evaluate

    train, test = load("fashion-mnist", "train"), load("fashion-mnist", "test")
    model = create_model("resnet20", num_classes=train.num_classes, in_chans=train.in_chans)
    result = fit(model, train, None, TrainConfig(epochs=4, schedule="onecycle"), out="runs/demo")
    print(evaluate(result.model, test).top1)
"""

from resnet.train.callbacks import Callback
from resnet.train.config import RECIPES, TrainConfig, resolve_config
from resnet.train.evaluation import EvalResult, evaluate
from resnet.train.rundir import prepare_run_dir, resume_config
from resnet.train.state import TrainingState
from resnet.train.step import make_train_step
from resnet.train.trainer import FitResult, Trainer, fit, run_training

__all__ = [
    "RECIPES", "Callback", "EvalResult", "FitResult", "TrainConfig", "Trainer", "TrainingState", "evaluate", "fit",
    "make_train_step", "prepare_run_dir", "resolve_config", "resume_config", "run_training",
]
