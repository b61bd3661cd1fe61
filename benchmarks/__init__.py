"""Speed and accuracy measurements of ncseg on this machine, each a module run from the project root as
`python -m benchmarks.<name>` and writing a markdown table that names the CPU; shared helpers in
benchmarks.common. They call the library's public functions and read what it records."""
