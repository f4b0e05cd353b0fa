"""Training: ``fit`` (the loop, run folder, exact resume, DDP) and ``evaluate`` (loss, top-1/5, confusion).

The counterparts of Keras' ``compile``/``fit``/``evaluate``::

    from resnet import create_model
    from resnet.data import load
    from resnet.train import TrainConfig, fit, evaluate

    train, test = load("fashion-mnist", "train"), load("fashion-mnist", "test")
    model = create_model("resnet20", num_classes=train.num_classes, in_chans=train.in_chans)
    result = fit(model, train, None, TrainConfig(epochs=4, schedule="onecycle"), out="runs/demo")
    print(evaluate(result.model, test).top1)
"""

from resnet.train.config import RECIPES, TrainConfig, resolve_config
from resnet.train.fit import EvalResult, FitResult, evaluate, fit, prepare_run_dir, resume_config, run_training
from resnet.train.step import make_train_step

__all__ = [
    "RECIPES", "EvalResult", "FitResult", "TrainConfig", "evaluate", "fit", "make_train_step", "prepare_run_dir",
    "resolve_config", "resume_config", "run_training",
]
