FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md celeryconfig.py ./
COPY jobsys ./jobsys
COPY migrations ./migrations
RUN pip install --no-cache-dir -e .
USER nobody
