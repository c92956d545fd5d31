from services.flag.models import Base
from services.kit.migrate import run_env

run_env(Base.metadata)
