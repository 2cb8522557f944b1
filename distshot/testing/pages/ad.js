document.getElementById("banner").style.background = "#f00";
