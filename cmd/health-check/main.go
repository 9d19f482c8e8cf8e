// Command health-check is a placeholder until the probe lands.
package main

func main() {}
