from tests.infer.helpers import one_torch_thread  # noqa: F401  (fixture, used through pytestmark)
