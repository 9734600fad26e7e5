// placeholder: implemented by the fwp work in progress
