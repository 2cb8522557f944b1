document.getElementById("script").style.background = "#f00";
